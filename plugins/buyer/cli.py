"""``oa-node job submit|status|list|cancel`` and ``oa-node providers`` (gathered with their
NIP-SA liveness by :mod:`oa_node.plugins.buyer.providers`).

``job submit ... --wait`` follows the job in this process (live progress from feedback,
then verification and payment), or, when the buyer service already runs on this data dir,
watches the ledger while the service finishes it (one buyer per data dir); without
``--wait`` it prints the job id and the buyer service (``[buyer] enabled`` in
``oa-node start``) finishes it. Either way the job's whole
story is in the buyer ledger: ``oa-node job status ID``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from rich.table import Table

from oa_node.cli_kit import (
    ConfigOption,
    JsonOption,
    Progress,
    cell,
    console,
    default_config_path,
    print_json,
    progress,
    pubkey_arg,
    say,
    shared_options,
)
from oa_node.errors import UserError
from oa_node.files import private_dir
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError

if TYPE_CHECKING:
    from oa_node.ledger import Record
    from oa_node.node import Node
    from oa_node.plugins.buyer.engine import Buyer

job_app = typer.Typer(help="Buy compute: submit NIP-90 jobs, follow, verify and pay them.",
                      no_args_is_help=True)
submit_app = typer.Typer(help="Submit a job of a given schema.", no_args_is_help=True)
job_app.add_typer(submit_app, name="submit")

T = TypeVar("T")

ProviderOption = Annotated[list[str] | None, typer.Option(
    "--provider", "-p", help="Provider npub or hex pubkey (repeatable). Default: the job "
    "is addressed to the K (redundancy) providers with the best record here (see oa-node "
    "providers), then the lowest price, among live announcements of the schema within the "
    "bid; never one caught cheating. With --open, or when fewer than K qualify: any "
    "provider.")]
OpenOption = Annotated[bool, typer.Option(
    "--open", help="Address no provider: any provider may answer ([buyer] "
    "route_open_jobs = false does this for every job).")]
MaxPriceOption = Annotated[int | None, typer.Option(
    "--max-price", help="Most the job may cost, in msat (the bid; default [buyer]).")]
RedundancyOption = Annotated[int | None, typer.Option(
    "--redundancy", "-k", min=1, max=16,
    help="Providers that must agree (default [buyer] redundancy).")]
EncryptOption = Annotated[bool, typer.Option(
    "--encrypt", help="NIP-44 encrypt the request to the provider(s) named with --provider.")]
WaitOption = Annotated[bool, typer.Option(
    "--wait", help="Follow the job here until it ends. Exit code: 0 success, verified and "
    "paid; 3 the job failed (its result verified and paid: the tests failed honestly); 4 "
    "results rejected, or verified but not paid; 1 no outcome (--wait-timeout, expired, "
    "undecided, cancelled) or an error.")]
WaitTimeoutOption = Annotated[float, typer.Option(
    "--wait-timeout", help="Most seconds --wait waits.")]
TtlOption = Annotated[int | None, typer.Option(
    "--ttl", help="Seconds a provider may still start the job (NIP-40 expiration).")]
DedicatedOption = Annotated[bool | None, typer.Option(
    "--dedicated-kind/--generic-kind", help="Publish kind 5930/5931 instead of 5050.")]


@dataclass
class SubmitOpts:
    """What every ``job submit`` command takes besides its schema's fields."""

    provider: ProviderOption = None
    open_job: OpenOption = False
    max_price: MaxPriceOption = None
    redundancy: RedundancyOption = None
    encrypt: EncryptOption = False
    wait: WaitOption = False
    wait_timeout: WaitTimeoutOption = 900
    ttl: TtlOption = None
    dedicated_kind: DedicatedOption = None
    config: ConfigOption = None
    as_json: JsonOption = False


def _load(config: Path | None, *, services: bool = True) -> Node:
    """The node for a command; commands that only read the ledger or relays skip the
    services (no wallet connection, no other plugin's set-up)."""
    from oa_node.node import build_node

    return build_node(default_config_path(config), services=services)


def _buyer(node: Node) -> Buyer:
    from oa_node.plugins.buyer.engine import Buyer
    from oa_node.plugins.buyer.settings import BuyerSettings

    private_dir(node.data_dir)
    return Buyer(node, BuyerSettings.from_section(node.config.get("buyer") or {}))


def _run(node: Node, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` in an event loop with the node's pool closed afterwards."""

    async def main() -> T:
        try:
            return await fn()
        finally:
            with anyio.CancelScope(shield=True):
                await node.pool.close()

    return anyio.run(main)


# --- submit ---------------------------------------------------------------------------------


@submit_app.command("sandbox_run")
@shared_options(SubmitOpts)
def submit_sandbox_run(
    repo: Annotated[str | None, typer.Option("--repo", help="Repository URL to check out.")
                    ] = None,
    ref: Annotated[str, typer.Option("--ref", help="Git ref (branch, tag, commit).")] = "HEAD",
    cmd: Annotated[list[str] | None, typer.Option("--cmd", help="Command to run (repeatable, "
                                                  "in order).")] = None,
    image: Annotated[str, typer.Option("--image", help="Image digest sha256:... (default: "
                                       "the provider's base image).")] = "",
    network: Annotated[str, typer.Option("--network", help="none | localhost | full")] = "none",
    timeout_secs: Annotated[float, typer.Option("--timeout-secs", help="Time limit.")] = 60,
    memory_mb: Annotated[int, typer.Option("--memory-mb", help="Memory limit.")] = 512,
    cpus: Annotated[float, typer.Option("--cpus", help="CPU limit.")] = 1.0,
    artifact: Annotated[list[str] | None, typer.Option(
        "--artifact", help="Workspace path or glob to hash and report (repeatable).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE (repeatable).")
                   ] = None,
    continue_on_fail: Annotated[bool, typer.Option(
        "--continue-on-fail", help="Run later commands after a failing one.")] = False,
    *, opts: SubmitOpts,
) -> None:
    """Run commands on a repository checkout in a provider's sandbox (oa.sandbox_run.v1)."""
    if not cmd:
        raise UserError("give at least one --cmd")
    environment: dict[str, str] = {}
    for item in env or []:
        if "=" not in item:
            raise UserError(f"--env {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        environment[k] = v
    node = _load(opts.config)
    doc: dict[str, Any] = {
        "sandbox": {"provider": "docker", "image_digest": image, "network_policy": network,
                    "resources": {"memory_mb": memory_mb, "cpus": cpus,
                                  "timeout_secs": timeout_secs}},
        "commands": [{"cmd": c, "continue_on_fail": continue_on_fail} for c in cmd],
        "env": environment,
        "verification": _verification(node, opts.redundancy),
    }
    if repo:
        doc["repo"] = {"source": repo, "git_ref": ref}
    if artifact:
        doc["artifacts"] = list(artifact)
    _submit(node, "oa.sandbox_run.v1", doc, opts)


@submit_app.command("build")
@shared_options(SubmitOpts)
def submit_build(
    repo: Annotated[str, typer.Option("--repo", help="Repository URL to build.")],
    ref: Annotated[str, typer.Option("--ref", help="Git ref (branch, tag, commit).")] = "HEAD",
    profile: Annotated[str, typer.Option(
        "--profile", help="Build profile: make | pip_wheel.")] = "make",
    target: Annotated[list[str] | None, typer.Option(
        "--target", help="A make target (repeatable; profile make).")] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", help="Output path or glob to hash and report (repeatable; default: the "
        "profile's, e.g. dist/*.whl).")] = None,
    image: Annotated[str, typer.Option("--image", help="Image digest sha256:... (default: "
                                       "the provider's base image).")] = "",
    timeout_secs: Annotated[float, typer.Option("--timeout-secs", help="Time limit.")] = 300,
    memory_mb: Annotated[int, typer.Option("--memory-mb", help="Memory limit.")] = 1024,
    *, opts: SubmitOpts,
) -> None:
    """Build a repository with a build profile, network off, and get its outputs' hashes (an
    oa.sandbox_run.v1 job: any provider serving it can run it, any buyer verify it)."""
    from oa_node.executors.build import build_request

    try:
        doc = build_request(repo, ref, profile, outputs=output, targets=target,
                            resources={"timeout_secs": timeout_secs, "memory_mb": memory_mb},
                            image_digest=image).to_dict()
    except ValueError as exc:  # a SchemaError too
        raise UserError(f"build: {exc}") from None
    node = _load(opts.config)
    doc["verification"] = _verification(node, opts.redundancy)
    _submit(node, "oa.sandbox_run.v1", doc, opts)


@submit_app.command("repo_index")
@shared_options(SubmitOpts)
def submit_repo_index(
    repo: Annotated[str, typer.Option("--repo", help="Repository URL to index.")],
    ref: Annotated[str, typer.Option("--ref", help="Git ref.")] = "HEAD",
    index_type: Annotated[list[str] | None, typer.Option(
        "--index-type", help="digests | symbols | dependencies (repeatable).")] = None,
    expected_tree: Annotated[str | None, typer.Option(
        "--expected-tree", help="tree_sha256 the checkout must have.")] = None,
    *, opts: SubmitOpts,
) -> None:
    """Index a repository: file digests and tree hash, symbols, dependencies."""
    node = _load(opts.config)
    doc: dict[str, Any] = {
        "repo_url": repo, "git_ref": ref, "index_types": list(index_type or ["digests"]),
        "verification": _verification(node, opts.redundancy),
    }
    if expected_tree:
        doc["expected_tree_sha256"] = expected_tree
    _submit(node, "oa.repo_index.v1", doc, opts)


def _verification(node: Node, redundancy: int | None) -> dict[str, Any]:
    """Objective verification by ``redundancy`` providers (default: ``[buyer]``'s)."""
    k = redundancy or int((node.config.get("buyer") or {}).get("redundancy", 1))
    return {"mode": "objective", "redundancy": k,
            "adjudication": "majority_vote" if k > 1 else "none"}


def _submit(node: Node, schema: str, doc: dict[str, Any], opts: SubmitOpts) -> None:
    """The one body of every ``job submit``: publish, then follow the job with --wait."""
    as_json, wait, wait_timeout = opts.as_json, opts.wait, opts.wait_timeout
    providers = [pubkey_arg(p, "--provider") for p in opts.provider or []]
    buyer = _buyer(node)
    k = int((doc.get("verification") or {}).get("redundancy", 1))
    if k > 1 and not opts.encrypt and not buyer.settings.encrypt_results:
        buyer.close()
        raise UserError(f"redundancy {k} with results in clear ([buyer] encrypt_results = "
                        "false): anyone could copy a clear result and agree with it; keep "
                        "encrypt_results on, or use --redundancy 1")

    async def go() -> tuple[str, bool]:
        job_id = await buyer.submit(schema, doc, providers=providers,
                                    max_price_msat=opts.max_price, encrypt=opts.encrypt,
                                    dedicated_kinds=opts.dedicated_kind, ttl_secs=opts.ttl,
                                    route=False if opts.open_job else None,
                                    followed=True if wait else None)
        if not as_json:
            say("submitted job [bold]{}[/] ({})", job_id, schema)
        if not wait:
            return job_id, True
        finished = False
        with anyio.move_on_after(wait_timeout):
            if as_json:
                await _follow(buyer, job_id, None)
            else:
                with progress("waiting for providers...") as status:
                    buyer.progress = _only(job_id, _progress_printer(status))
                    await _follow(buyer, job_id, status)
            finished = True
        return job_id, finished

    try:
        job_id, finished = _run(node, go)
    finally:
        buyer.close()
    rec = _open_ledger(node).get(job_id)
    assert rec is not None
    if as_json:
        print_json(_job_json(rec))
    elif wait:
        _print_outcome(rec, finished, wait_timeout)
    else:
        say("follow it with: oa-node job status {}", job_id[:16])
    if wait:
        from oa_node.plugins.buyer.results import EXIT_ERROR, outcome

        code = outcome(rec)[1] if finished else EXIT_ERROR
        if code:
            raise typer.Exit(code)


async def _follow(buyer: Buyer, job_id: str, status: Progress | None) -> None:
    """Be the buyer for this job, or, when one already runs on this data dir (the
    service), watch the ledger while it finishes the job: never a second buyer."""
    from oa_node.plugins.buyer.engine import BuyerBusy

    try:
        await buyer.run(only=[job_id], stop_when_done=True)
        return
    except BuyerBusy:
        pass
    show = buyer.progress if status is not None else None
    if show is not None:
        say("  the buyer service on this data dir follows it")
    state, results = "", set()
    while True:
        done = buyer.done({job_id})
        rec = buyer.ledger.get(job_id)
        if show is not None and rec is not None:
            for rid, r in (rec.data.get("results") or {}).items():
                if rid not in results and r.get("check"):
                    results.add(rid)
                    show(job_id, "result", r["check"])
            if rec.state != state:
                state = rec.state
                if state in ("verified", "rejected", "undecided", "paid", "refused", "expired"):
                    show(job_id, state, {})
        if done:
            return
        await anyio.sleep(0.3)


def _only(job_id: str, show: Callable[[str, str, dict[str, Any]], None]
          ) -> Callable[[str, str, dict[str, Any]], None]:
    """Progress of ``job_id`` only (a buyer following one job hears of the others too)."""
    def filtered(jid: str, what: str, info: dict[str, Any]) -> None:
        if jid == job_id:
            show(jid, what, info)

    return filtered


def _progress_printer(status: Progress) -> Callable[[str, str, dict[str, Any]], None]:
    """Show the buyer's progress events (feedback, results, verdicts) as they come."""

    def show(job_id: str, what: str, info: dict[str, Any]) -> None:
        if what == "feedback":
            who = nip19.npub_encode(info["provider"])[:16]
            extra = f": {info['info']}" if info.get("info") else ""
            status.log("  [cyan]feedback[/] {}… {}{}", who, info["status"], extra)
            status.update("{} ({}…)", info["status"], who)
        elif what == "result":
            who = nip19.npub_encode(info["provider"])[:16]
            verdict = "[green]valid[/]" if info["ok"] else "[red]invalid[/]"
            status.log(f"  [cyan]result[/] from {{}}…: status {{}}, {verdict}", who,
                       info.get("status") or "?")
            for p in info.get("problems", []):
                status.log("    - {}", p)
            status.update("verifying")
        elif what == "audit":
            if info.get("status") == "unavailable":
                status.log("  [yellow]audit unavailable[/] here (no vote): {}",
                           info.get("reason", ""))
            else:
                status.log("  [cyan]audit[/] re-ran here: status {}", info.get("status"))
        elif what in ("verified", "rejected", "undecided"):
            color = "green" if what == "verified" else "red"
            status.log(f"  [{color}]{what}[/]{{}}",
                       f": {info['reason']}" if info.get("reason") else "")
            status.update("paying" if what == "verified" else "done")
        elif what == "pay_error":
            status.log("  [yellow]payment failed for now[/]: {}", info["error"])
        elif what in ("paid", "refused", "expired"):
            status.log(f"  [bold]{what}[/]")

    return show


def _print_outcome(rec: Record, finished: bool, wait_timeout: float) -> None:
    color = {"paid": "green", "verified": "green", "refused": "yellow"}.get(rec.state, "red")
    from oa_node.plugins.buyer.results import outcome

    say(f"job {{}}: [{color}]{{}}[/] ({{}})", rec.id[:16], rec.state, outcome(rec)[0])
    for rid, reason in (rec.data.get("refusals") or {}).items():
        say("  not paid {}: {}", rid[:12], reason)
    if rec.state == "verified" and rec.data.get("pay_error"):
        say("  payment pending: {} (the buyer service retries)", rec.data["pay_error"])
    if not finished:
        say("  still {} after {:g}s; the buyer service (oa-node start with {} enabled) "
            "finishes it", rec.state, wait_timeout, "[buyer]")


# --- status / list / cancel -----------------------------------------------------------------


def _open_ledger(node: Node) -> Any:
    from oa_node.plugins.buyer.ledger import open_buyer_ledger

    return open_buyer_ledger(node.data_dir)


def _find(node: Node, job_id: str) -> Record:
    ledger = _open_ledger(node)
    try:
        rec = ledger.get(job_id) or ledger.find(job_id)
    finally:
        ledger.close()
    if rec is None:
        raise UserError(f"no job {job_id!r} in {node.data_dir} (or the prefix is ambiguous)")
    return rec


def _job_json(rec: Record) -> dict[str, Any]:
    from oa_node.plugins.buyer.results import outcome

    d = rec.data
    results = []
    for rid, r in (d.get("results") or {}).items():
        c = r.get("check", {})
        results.append({"result_id": rid, "provider": c.get("provider"), "valid": c.get("ok"),
                        "problems": c.get("problems", []), "status": c.get("status"),
                        "digest": c.get("digest"), "verdict": (d.get("verdicts") or {}).get(rid),
                        "payment": (d.get("payments") or {}).get(rid),
                        "refusal": (d.get("refusals") or {}).get(rid)})
    out: dict[str, Any] = {
        "id": rec.id, "state": rec.state, "schema": d.get("schema"),
        "level": d.get("level"), "audit_unavailable": d.get("audit_unavailable"),
        "request_ids": d.get("request_ids"), "redundancy": d.get("redundancy"),
        "max_price_msat": d.get("max_price_msat"), "encrypted": d.get("encrypted"),
        "providers": d.get("providers"), "created_at": rec.created_at,
        "updated_at": rec.updated_at, "last_feedback": d.get("last_feedback"),
        "results": results, "failures": d.get("failures"), "audit_digest": d.get("audit_digest"),
        "pay_error": d.get("pay_error"), "outcome": outcome(rec)[0],
    }
    return out


@job_app.command("status")
def job_status(
    job_id: Annotated[str, typer.Argument(help="Job id (or a unique prefix).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a job: state, results with verdicts, payments and the ledger history."""
    node = _load(config, services=False)
    rec = _find(node, job_id)
    ledger = _open_ledger(node)
    try:
        history = [{"from": h.from_state, "to": h.to_state, "at": h.at, "receipt": h.receipt}
                   for h in ledger.history(rec.id)]
    finally:
        ledger.close()
    data = _job_json(rec) | {"history": history}
    if as_json:
        print_json(data)
        return
    say("job [bold]{}[/] ({}): [bold]{}[/]{}", rec.id, data["schema"], rec.state,
        f", verified {data['level']}" if data["level"] else "")
    if data["audit_unavailable"]:
        say("  audit unavailable here: {}", data["audit_unavailable"])
    say("  redundancy {}, bid {} msat{}", data["redundancy"], data["max_price_msat"],
        ", encrypted" if data["encrypted"] else "")
    fb = data.get("last_feedback")
    if fb:
        say("  last feedback: {} {}", fb["status"], fb.get("info") or "")
    table = Table("result", "provider", "status", "valid", "verdict", "paid")
    for r in data["results"]:
        table.add_row(cell(r["result_id"][:12]), _npub_cell(r["provider"]),
                      cell(r["status"]), "yes" if r["valid"] else "no", cell(r["verdict"] or "-"),
                      cell(f"{r['payment'].get('amount_msat')} msat" if r["payment"] else
                           r["refusal"] or "-"))
    if data["results"]:
        console.print(table)
    for r in data["results"]:
        for p in r["problems"]:
            say("  [red]{}[/]: {}", r["result_id"][:12], p)
    for h in history:
        when = time.strftime("%H:%M:%S", time.localtime(h["at"]))
        say("  {} {} -> {}", when, h["from"] or "-", h["to"])


def _npub_cell(pubkey: object) -> Any:
    """A provider's npub, shortened; what the ledger holds is shown as it is if not a key."""
    try:
        return cell(nip19.npub_encode(str(pubkey))[:20] + "…")
    except (ProtocolError, ValueError):
        return cell(pubkey)


@job_app.command("result")
def job_result(
    job_id: Annotated[str, typer.Argument(help="Job id (or a unique prefix).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a job's results say: each run's command, exit code, duration and output
    preview, artifacts, or the index, or the error; with the buyer's verdict, level and
    payment. Text from providers is shown literally."""
    from oa_node.plugins.buyer import results

    node = _load(config, services=False)
    rec = _find(node, job_id)
    docs = _run(node, lambda: results.result_docs(node, rec))
    if as_json:
        print_json({"id": rec.id, "state": rec.state, "schema": rec.data.get("schema"),
                     "level": rec.data.get("level"), "results": docs})
        return
    results.show(rec, docs)


@job_app.command("list")
def job_list(
    state: Annotated[str | None, typer.Option("--state", help="Only jobs in this state.")
                     ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most jobs shown.")] = 50,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List this node's jobs, newest first."""
    node = _load(config, services=False)
    ledger = _open_ledger(node)
    try:
        records = ledger.in_states(state) if state else ledger.all(limit)
    finally:
        ledger.close()
    records = records[:limit]
    if as_json:
        print_json([_job_json(r) for r in records])
        return
    from oa_node.plugins.buyer.results import outcome

    # no rules: six columns fit 80 characters; ids and schemas are never cut
    table = Table(box=None, pad_edge=False)
    for name in ("id", "schema", "state", "outcome", "level", "created"):
        table.add_column(name, no_wrap=name in ("id", "schema"), header_style="bold")
    for r in records:
        table.add_row(cell(r.id[:12]), cell(r.data.get("schema")), cell(r.state),
                      cell(outcome(r)[0]), cell(r.data.get("level") or "-"),
                      time.strftime("%m-%d %H:%M", time.localtime(r.created_at)))
    console.print(table)


@job_app.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(help="Job id (or a unique prefix).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw a job: NIP-09 deletion of its requests; providers stop or skip it."""
    node = _load(config)
    rec = _find(node, job_id)
    buyer = _buyer(node)
    try:
        done = _run(node, lambda: buyer.cancel(rec.id))
    finally:
        buyer.close()
    if as_json:
        print_json(_job_json(done))
    else:
        say("job {}: cancelled", rec.id[:16])
