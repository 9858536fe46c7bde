"""``oa-node sandbox``: build the base image, run a job locally, check the setup.

Exit codes: 0 success; 1 a user error (no Docker daemon) or, for ``run``, a job whose
status is not ``success`` (cancelled included); 2 a usage error or, for ``run``, an invalid
request (nothing ran).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from oa_node.cli_kit import (
    JsonOption,
    cell,
    config_option,
    console,
    default_config_path,
    err_console,
    print_json,
    print_text,
    progress,
    read_text_input,
    render,
    say,
)
from oa_node.errors import UserError

app = typer.Typer(help="Docker sandbox: base image, local job runs, diagnostics.",
                  no_args_is_help=True)
ConfigOption = config_option(
    "Config file with a [sandbox] section (default: ./node.toml if present).")


def _config(path: Path | None) -> Any:
    from oa_node.node import build_node

    return build_node(default_config_path(path)).config


def _client(config: Any) -> Any:
    from oa_node.sandbox.base import SandboxUnavailable
    from oa_node.sandbox.docker import connect

    try:
        return connect(config["sandbox"]["docker_host"] or None)
    except SandboxUnavailable as exc:
        raise UserError(str(exc)) from None


@app.command("build-image")
def build_image(
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
    dockerfile: Annotated[bool, typer.Option(
        "--dockerfile", help="Build from the Dockerfile (needs a reachable registry).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Build the sandbox base image (debootstrap + docker import) and print its digest.

    Idempotent: an image with the same recipe is reused at once.
    """
    from oa_node.sandbox.base import SandboxError
    from oa_node.sandbox.image import Recipe, build_base_image, build_from_dockerfile

    client = _client(_config(config))

    def progress(line: str) -> None:
        err_console.print(render("[dim]{}[/]", line), soft_wrap=True)

    try:
        if dockerfile:
            digest = build_from_dockerfile(client, progress=progress)
        else:
            digest = build_base_image(client, force=force, progress=progress)
    except SandboxError as exc:
        raise UserError(str(exc)) from None
    recipe = Recipe()
    if as_json:
        print_json({"digest": digest, "tag": recipe.tag, "recipe_sha256": recipe.hash()})
    else:
        say("{}", digest)


def _load_request(path: str) -> Any:
    from oa_node.canonical import CanonicalJSONError, loads

    text = read_text_input(path)
    try:
        return loads(text)
    except (ValueError, CanonicalJSONError) as exc:
        raise UserError(f"{path}: not valid JSON: {exc}") from None


#: ``sandbox run`` exit codes
EXIT_FAILED = 1  # the job ran (or could not run) and its status is not success
EXIT_INVALID = 2  # the request is invalid: nothing was run


def _invalid(message: str, as_json: bool) -> typer.Exit:
    """An invalid request: a result with status ``error`` under ``--json``, else one
    ``error:`` line; exit code 2 either way (nothing ran)."""
    if as_json:
        print_json({"status": "error", "error": message})
    else:
        from oa_node.cli_kit import print_error

        print_error(message)
    return typer.Exit(EXIT_INVALID)


@app.command("run")
def run(
    request: Annotated[str, typer.Argument(help="Request JSON file ('-' for stdin).")],
    schema: Annotated[str | None, typer.Option(
        help="oa.sandbox_run.v1 or oa.repo_index.v1 (default: guessed from the fields).")] = None,
    artifacts_dir: Annotated[Path | None, typer.Option(
        help="Save artifact files here.")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a job locally and print its result. Exit code 0 success; 1 the job's status is
    not success (failed, timeout, error, cancelled); 2 an invalid request (nothing ran;
    `--json` still prints a result, with status "error"). SIGINT/SIGTERM cancel the job:
    its container and checkout are removed and the cancelled result is printed."""
    from oa_node.executors.builtin import REPO_INDEX, SANDBOX_RUN
    from oa_node.executors.jobtype import ExecContext
    from oa_node.executors.schema import SchemaError
    from oa_node.plugins.sandbox.config import (
        forget_sandbox,
        make_sandbox,
        settings_from_config,
    )
    from oa_node.sandbox.base import SandboxError

    try:
        doc = _load_request(request)
    except UserError as exc:
        raise _invalid(str(exc), as_json) from None
    if schema is None:
        schema = REPO_INDEX.schema_id if isinstance(doc, dict) and "repo_url" in doc else (
            SANDBOX_RUN.schema_id)
    job_type = {SANDBOX_RUN.schema_id: SANDBOX_RUN, REPO_INDEX.schema_id: REPO_INDEX}.get(schema)
    if job_type is None:
        raise _invalid(f"--schema: unknown schema {schema!r}", as_json)
    try:
        parsed = job_type.request_model.from_dict(doc)
    except SchemaError as exc:
        raise _invalid(f"{request}: invalid {schema} request: {exc}", as_json) from None
    cfg = _config(config)
    ctx = ExecContext(settings=settings_from_config(cfg), artifacts_dir=artifacts_dir)
    if job_type is SANDBOX_RUN:
        try:
            ctx.sandbox = make_sandbox(cfg)
        except SandboxError as exc:
            if as_json:
                print_json({"status": "error", "error": str(exc)})
                raise typer.Exit(EXIT_FAILED) from None
            raise UserError(str(exc)) from None
    try:
        with progress(f"running {schema}...", enabled=not as_json and console.is_terminal):
            result = _run_cancellable(job_type.executor, parsed, ctx)
    finally:
        if ctx.sandbox is not None:
            ctx.sandbox.close()
            forget_sandbox(cfg)
    if as_json:
        print_json(result.to_dict())
    else:
        _show(result)
    if result.status != "success":
        raise typer.Exit(EXIT_FAILED)


def _run_cancellable(executor: Any, parsed: Any, ctx: Any) -> Any:
    """Run the job in a worker thread; SIGINT or SIGTERM cancel it through its cancel
    token (the executor then kills and removes the container and deletes the checkout)
    and its cancelled result is returned. The wait is an Event, not ``Thread.join``: an
    interrupted join returns at once on Python 3.11, which left the job running."""
    import signal

    out: list[Any] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            out.append(executor(parsed, ctx))
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            done.set()

    def on_signal(signum: int, frame: Any) -> None:
        if not ctx.cancel.cancelled:
            err_console.print(render("{}: cancelling the job...", signal.Signals(signum).name))
            ctx.cancel.cancel()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        threading.Thread(target=work, daemon=True, name="sandbox-run").start()
        while not done.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]
    return out[0]


def _show(result: Any) -> None:
    colour = "green" if result.status == "success" else "red"
    say(f"status: [{colour}]{{}}[/]", result.status)
    if result.error:
        say("error: {}", cell(result.error, limit=4000))
    for run in getattr(result, "runs", ()):
        cmd = run.cmd if isinstance(run.cmd, str) else " ".join(run.cmd)
        say("[bold]$ {}[/]  exit {}, {} ms, stdout {} B, stderr {} B", cmd, run.exit_code,
            run.duration_ms, run.stdout_bytes, run.stderr_bytes)
        for text in (run.stdout_preview, run.stderr_preview):
            if text:
                print_text(text.rstrip())
    if getattr(result, "tree_sha256", ""):
        say("tree_sha256: {} ({} files)", result.tree_sha256, len(result.digests))
    if result.artifacts:
        table = Table("artifact", "sha256", "bytes")
        for a in result.artifacts:
            table.add_row(cell(getattr(a, "path", getattr(a, "index_type", ""))), cell(a.sha256),
                          cell(getattr(a, "size_bytes", getattr(a, "bytes", 0))))
        console.print(table)
    say("output_sha256: {}", result.provenance.output_sha256)


@app.command("prune")
def prune(
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the orphaned containers, remove nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove orphaned sandbox containers of this node's data dir: those whose owner
    process (a provider, an audit, a `sandbox run`) is gone, running ones killed first.
    Containers of another live owner, of another data dir or without oa-node's labels are
    never touched. Every start of a sandbox does the same by itself."""
    from oa_node.plugins.sandbox.config import sandbox_identity
    from oa_node.sandbox.docker import DockerSandbox

    cfg = _config(config)
    namespace, aliases = sandbox_identity(cfg)
    sandbox = DockerSandbox(_client(cfg), namespace=namespace, aliases=aliases,
                            cleanup_on_start=False)
    found = sandbox.orphans()
    for o in found:
        cid = o.pop("cid")
        try:
            o["removed"] = False if dry_run else sandbox.remove(cid)
        except Exception as exc:  # docker.errors.APIError: say it, go on with the others
            o["removed"], o["reason"] = False, f"{o['reason']}; could not remove: {exc}"
    if as_json:
        print_json({"data_dir_id": namespace, "dry_run": dry_run, "orphans": found})
        return
    if not found:
        say("no orphaned sandbox containers (data dir id {})", namespace)
        return
    for o in found:
        done = "would remove" if dry_run else ("removed" if o["removed"] else "already gone")
        say("{} {} ({}, job {}): {}", done, o["id"], o["state"], cell(o["job"] or "?"),
            cell(o["reason"]))


@app.command("doctor")
def doctor(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Check that jobs can run here: Docker daemon, image, image-building tools."""
    from oa_node.sandbox.base import SandboxError, SandboxUnavailable
    from oa_node.sandbox.docker import connect
    from oa_node.sandbox.image import Recipe, find_image

    cfg = _config(config)
    s = cfg["sandbox"]
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "", required: bool = True) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail, "fix": "" if ok else fix,
                       "required": required})

    client = None
    try:
        client = connect(s["docker_host"] or None)
        info = client.info()
        add("docker daemon", True, f"Docker {info.get('ServerVersion')}, cgroup v"
            f"{info.get('CgroupVersion', '?')} ({info.get('CgroupDriver')}), "
            f"{info.get('NCPU')} CPUs")
    except SandboxUnavailable as exc:
        add("docker daemon", False, str(exc),
            "install docker.io and start dockerd (sudo systemctl start docker)")
    if client is not None:
        try:
            if s["image"]:
                digest = str(client.images.get(s["image"]).id)
                add("image", True, f"configured image {digest}")
            else:
                recipe = Recipe()
                found = find_image(client, recipe)
                add("image", found is not None,
                    f"{recipe.tag} -> {found}" if found else f"{recipe.tag} not built",
                    "oa-node sandbox build-image")
                digest = found or ""
            if digest:
                _check_python3(client, digest, add)
        except (SandboxError, Exception) as exc:  # docker.errors.ImageNotFound and friends
            add("image", False, f"configured image {s['image']}: {exc}",
                "set [sandbox] image to a present digest, or leave it empty and build")
    add("debootstrap", shutil.which("debootstrap") is not None,
        shutil.which("debootstrap") or "not installed", "apt-get install -y debootstrap",
        required=False)
    add("root (for debootstrap)", os.geteuid() == 0, f"euid {os.geteuid()}",
        "run build-image as root (or with sudo)", required=False)
    ok = all(c["ok"] for c in checks if c["required"])
    if as_json:
        print_json({"ok": ok, "checks": checks})
    else:
        for c in checks:
            mark = "[green]ok[/]" if c["ok"] else ("[red]FAIL[/]" if c["required"]
                                                  else "[yellow]warn[/]")
            say(f"{mark}  {{}}: {{}}", c["check"], cell(c["detail"], limit=4000))
            if c["fix"]:
                say("      fix: {}", c["fix"])
    if not ok:
        raise typer.Exit(1)


def _check_python3(client: Any, image: str, add: Any) -> None:
    """Jobs need ``python3`` in the image: the in-container runner is a Python script."""
    try:
        out = client.containers.run(image, ["python3", "--version"], remove=True,
                                     network_disabled=True, stdout=True, stderr=True,
                                     user="65534:65534", entrypoint=[])
        add("python3 in image", True, out.decode(errors="replace").strip())
    except Exception as exc:  # docker.errors.ContainerError, APIError...
        add("python3 in image", False, f"{image}: cannot run python3 ({str(exc)[:200]})",
            "use an image with python3 (the base image has it: oa-node sandbox build-image)")
