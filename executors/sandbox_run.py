"""Executor and verifier of ``oa.sandbox_run.v1``.

The executor checks everything it can before any work (schema, empty command list, network
policy, image, URL scheme), fetches the repository on the host into a fresh per-job folder
(``git_fetch``), hands the sandbox one ``RunSpec`` and turns its outcome into a result with
provenance. It never raises for a bad job: every failure is a result with ``status`` and
``error``. The per-job folder is always removed.

Status rules: ``success`` when every command exits 0 (a failing command marked
``continue_on_fail`` does not fail the job); ``failed`` at the first other non-zero exit
(later commands not run) or an OOM kill; ``timeout`` when the time limit cut a command;
``cancelled`` on the cancel token; ``error`` when the job could not be run as asked.
"""

from __future__ import annotations

import shutil
from typing import Any

from oa_node.executors.git_fetch import FetchError, check_url, fetch_repo
from oa_node.executors.jobtype import (
    ExecContext,
    ExecutorSettings,
    Verdict,
    execute_with_provenance,
    verify_start,
)
from oa_node.executors.sandbox_run_schema import (
    Artifact,
    EnvInfo,
    RunRecord,
    SandboxRunRequest,
    SandboxRunResult,
)
from oa_node.sandbox.base import CommandSpec, RunOutcome, RunSpec, SandboxError


def _error(message: str, image: str = "") -> SandboxRunResult:
    return SandboxRunResult(status="error", error=message, env_info=EnvInfo(image_digest=image))


def _from_outcome(outcome: RunOutcome, commit: str) -> SandboxRunResult:
    info = dict(outcome.system_info)
    if commit:
        info["repo_commit"] = commit
    if outcome.oom_killed:
        info["oom_killed"] = True
    return SandboxRunResult(
        status=outcome.status,
        error=outcome.error,
        env_info=EnvInfo(image_digest=outcome.image_digest, hostname=outcome.hostname,
                         system_info=info),
        runs=tuple(RunRecord(
            cmd=r.cmd, exit_code=r.exit_code, duration_ms=r.duration_ms,
            stdout_sha256=r.stdout_sha256, stderr_sha256=r.stderr_sha256,
            stdout_preview=r.stdout_preview, stderr_preview=r.stderr_preview,
            stdout_bytes=r.stdout_bytes, stderr_bytes=r.stderr_bytes,
            timed_out=r.timed_out, oom_killed=r.oom_killed) for r in outcome.runs),
        artifacts=tuple(Artifact(path=a.path, sha256=a.sha256, size_bytes=a.size_bytes,
                                 mime_type=a.mime_type) for a in outcome.artifacts),
    )


def execute_sandbox_run(request: SandboxRunRequest | dict[str, Any],
                        ctx: ExecContext) -> SandboxRunResult:
    """Run one ``oa.sandbox_run.v1`` job; always returns a result, never raises for it."""
    return execute_with_provenance(request, ctx, SandboxRunRequest, _prepare_and_run, _error)


def admit_sandbox_run(req: SandboxRunRequest, s: ExecutorSettings) -> str | None:
    """Why this provider refuses ``req`` before any work (``None``: it takes it): no
    commands, a network policy, URL scheme or resource limit it does not allow. A provider
    says so in an ``error`` feedback; it never publishes a result (and an invoice) for it."""
    if not req.commands:
        return "the job has no commands to run (commands is empty)"
    if req.sandbox.network_policy not in s.allowed_network_policies:
        return (f"network_policy {req.sandbox.network_policy!r} is not allowed by this "
                f"provider (allowed: {', '.join(s.allowed_network_policies)})")
    if req.repo is not None:
        try:
            check_url(req.repo.source, s.allowed_url_schemes)
        except FetchError as exc:
            return str(exc)
    res, m = req.sandbox.resources, s.max_limits
    for name, asked, most in (("memory_mb", res.memory_mb, m.memory_mb),
                              ("cpus", res.cpus, m.cpus),
                              ("timeout_secs", res.timeout_secs, m.timeout_secs),
                              ("disk_mb", res.disk_mb, m.disk_mb), ("pids", res.pids, m.pids)):
        if asked > most:
            return f"resources.{name} {asked:g} is more than this provider allows ({most:g})"
    return None


def _prepare_and_run(req: SandboxRunRequest, ctx: ExecContext) -> SandboxRunResult:
    s = ctx.settings
    if not req.commands:
        return _error("the job has no commands to run (commands is empty)")
    if req.sandbox.network_policy not in s.allowed_network_policies:
        return _error(f"network_policy {req.sandbox.network_policy!r} is not allowed by this "
                      f"provider (allowed: {', '.join(s.allowed_network_policies)})")
    sandbox = ctx.sandbox
    if sandbox is None:
        return _error("no sandbox backend is configured")
    if req.sandbox.provider != sandbox.name:
        return _error(f"sandbox provider {req.sandbox.provider!r} is not served here "
                      f"(this provider runs {sandbox.name!r})")
    try:
        image = sandbox.resolve_image(req.sandbox.image_digest)
    except SandboxError as exc:
        return _error(str(exc), req.sandbox.image_digest)
    if req.repo is not None:
        try:
            check_url(req.repo.source, s.allowed_url_schemes)
        except FetchError as exc:
            return _error(str(exc), image)
    if ctx.cancel.cancelled:
        return SandboxRunResult(status="cancelled", error="cancelled before start",
                                env_info=EnvInfo(image_digest=image))
    res = req.sandbox.resources
    limits = s.cap(res.memory_mb, res.cpus, res.pids, res.timeout_secs, res.disk_mb)
    job_dir = s.workdir / ctx.job_id
    commit = ""
    try:
        workspace = None
        if req.repo is not None:
            try:
                # bytes received, files and their size are capped while fetching and
                # before checkout (git_fetch), never measured after the fact
                checkout = fetch_repo(req.repo.source, req.repo.git_ref, job_dir / "repo",
                                      allowed_schemes=s.allowed_url_schemes,
                                      timeout_secs=s.fetch_timeout_secs,
                                      limits=s.fetch_limits(limits.disk_mb),
                                      cancel=ctx.cancel)
            except (FetchError, OSError) as exc:
                if ctx.cancel.cancelled:
                    return SandboxRunResult(status="cancelled", error="cancelled while "
                                            "fetching", env_info=EnvInfo(image_digest=image))
                return _error(str(exc), image)
            commit = checkout.commit
            workspace = checkout.path
        spec = RunSpec(
            job_id=ctx.job_id,
            commands=tuple(CommandSpec(c.cmd, c.workdir, c.continue_on_fail)
                           for c in req.commands),
            image=image,
            workspace=workspace,
            mount_path=req.mount_path,
            env=dict(req.env),
            limits=limits,
            network=req.sandbox.network_policy,  # type: ignore[arg-type]
            artifacts=req.artifacts,
            artifacts_dir=ctx.artifacts_dir,
        )
        outcome = sandbox.run(spec, ctx.cancel)
        return _from_outcome(outcome, commit)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _stops(run: RunRecord, cmd: Any) -> bool:
    """Whether the runner stops after ``run``: a time-out, an OOM kill, or a non-zero exit
    of a command not marked ``continue_on_fail``."""
    return run.timed_out or run.oom_killed or (run.exit_code != 0 and not cmd.continue_on_fail)


def _work_problems(req: SandboxRunRequest, res: SandboxRunResult) -> list[str]:
    """Whether the runs prove the work the status claims: ``error``/``cancelled`` results
    and missing runs, exit codes or durations are no work to pay for, and the runs must be
    exactly the commands the runner executes (in order, stopping where the schema says)."""
    if res.status in ("error", "cancelled"):
        return [f"status {res.status}: the job was not run, there is no work to pay for"
                + (f" ({res.error[:200]})" if res.error else "")]
    if not res.runs:
        return [f"status {res.status} with no runs: no work is shown"]
    problems: list[str] = []
    raw_runs = (res.raw or {}).get("runs") or []
    for i, raw in enumerate(raw_runs):
        if not isinstance(raw, dict) or "exit_code" not in raw or "duration_ms" not in raw:
            problems.append(f"runs[{i}] has no exit_code or no duration_ms")
    cmds = req.commands
    stop = next((i for i, (r, c) in enumerate(zip(res.runs, cmds, strict=False))
                 if _stops(r, c)), None)
    if stop is not None and stop + 1 != len(res.runs):
        problems.append(f"runs continue after runs[{stop}], where the runner stops")
    last = res.runs[-1]
    if res.status == "success":
        if len(res.runs) != len(cmds) or stop is not None:
            problems.append("status success, but not every command ran and passed")
    elif res.status == "failed":
        if stop is None or last.timed_out:
            oom = bool(res.env_info.system_info.get("oom_killed"))
            if not oom or last.timed_out:
                problems.append("status failed, but no command failed")
    elif res.status == "timeout":
        cut_between = stop is None and len(res.runs) < len(cmds)  # limit hit between commands
        if not last.timed_out and not cut_between:
            problems.append("status timeout, but every command finished in time")
    return problems


def verify_sandbox_run(request: SandboxRunRequest | dict[str, Any],
                       result: SandboxRunResult | dict[str, Any]) -> Verdict:
    """Objective checks a buyer can make without re-running the job."""
    start = verify_start(request, result, SandboxRunRequest, SandboxRunResult)
    if isinstance(start, Verdict):
        return start
    req, res, problems, digest = start
    wanted = req.sandbox.image_digest
    if wanted and res.env_info.image_digest != wanted:
        problems.append(f"ran image {res.env_info.image_digest or '(none)'}, asked for {wanted}")
    if len(res.runs) > len(req.commands):
        problems.append(f"{len(res.runs)} runs reported for {len(req.commands)} commands")
    for i, (run, cmd) in enumerate(zip(res.runs, req.commands, strict=False)):
        if run.cmd != cmd.cmd:
            problems.append(f"runs[{i}].cmd differs from commands[{i}].cmd")
    problems += _work_problems(req, res)
    paths = [a.path for a in res.artifacts]
    if len(set(paths)) != len(paths):
        problems.append("duplicate artifact paths")
    if len(paths) > 128:
        problems.append("more than 128 artifacts")
    if paths and not req.artifacts:
        problems.append("artifacts reported, none requested")
    net = res.env_info.system_info.get("network_policy")
    if net is not None and net != req.sandbox.network_policy:
        problems.append(f"ran with network {net!r}, asked for {req.sandbox.network_policy!r}")
    return Verdict(ok=not problems, problems=tuple(problems), verification_digest=digest)
