"""``oa-node job result ID``: what the providers' results of a job say, read back from the
buyer ledger (each result event is kept there whole), decrypted with the node's key when
the job was encrypted.

Every field comes from a provider and is hostile: it is shown through
:mod:`oa_node.cli_kit` (literal text, control characters made visible, one-line fields
bounded) and never trusted beyond display; the verdict and level shown are the buyer's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oa_node.cli_kit import cell, console, print_text, render, say
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event

if TYPE_CHECKING:
    from oa_node.ledger import Record
    from oa_node.node import Node

#: how much of a result's stdout/stderr preview the human view shows per run
PREVIEW_LINES = 20

#: ``job submit --wait`` exit codes by outcome (documented in the README and ``--help``)
EXIT_SUCCESS = 0  # verified and paid, and the job itself succeeded
EXIT_ERROR = 1  # no outcome: timed out waiting, expired, undecided, cancelled, an error
EXIT_JOB_FAILED = 3  # verified and paid: the provider honestly ran it and it failed
EXIT_NOT_PAID = 4  # results rejected, or verified but not paid (refused, payment pending)


def outcome(rec: Record) -> tuple[str, int]:
    """What a job came to, in a word, and the exit code ``--wait`` gives for it: from the
    buyer's state and the statuses of the results it passed."""
    state, data = rec.state, rec.data
    if state in ("paid", "verified", "refused"):
        verdicts = data.get("verdicts") or {}
        results = data.get("results") or {}
        statuses = sorted({str((results.get(rid) or {}).get("check", {}).get("status"))
                           for rid, v in verdicts.items() if v == "pass"})
        if state != "paid":
            return ("unpaid" if state == "verified" else "refused"), EXIT_NOT_PAID
        if statuses == ["success"]:
            return "success", EXIT_SUCCESS
        return "/".join(statuses) or "?", EXIT_JOB_FAILED
    if state == "rejected":
        return "rejected", EXIT_NOT_PAID
    if state in ("undecided", "expired", "cancelled"):
        return state, EXIT_ERROR
    return "pending", EXIT_ERROR


async def result_docs(node: Node, rec: Record) -> list[dict[str, Any]]:
    """One entry per result the buyer received: who, the buyer's verdict and payment,
    and the provider's result document (or why it cannot be read)."""
    from oa_node.nostr import nip90

    data = rec.data
    out: list[dict[str, Any]] = []
    for rid, r in (data.get("results") or {}).items():
        check = r.get("check") or {}
        entry: dict[str, Any] = {
            "result_id": rid, "provider": check.get("provider"), "valid": check.get("ok"),
            "problems": check.get("problems", []),
            "verdict": (data.get("verdicts") or {}).get(rid),
            "payment": (data.get("payments") or {}).get(rid),
            "refusal": (data.get("refusals") or {}).get(rid),
            "result": None, "unreadable": None,
        }
        try:
            entry["result"] = await nip90.result_document(Event.from_dict(r["event"]),
                                                          node.signer.nip44_decrypt)
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            entry["unreadable"] = f"{type(exc).__name__}: {exc}"
        out.append(entry)
    return out


def show(rec: Record, results: list[dict[str, Any]]) -> None:
    """The human view: the job's outcome, then each result's runs, previews and artifacts
    (sandbox_run), or its index (repo_index), or its error."""
    from oa_node.nostr import nip19

    data = rec.data
    level = data.get("level")
    say("job [bold]{}[/] ({}): [bold]{}[/]{}", rec.id, data.get("schema"), rec.state,
        f", verified {level}" if level else "")
    if not results:
        say("  no result yet")
    for r in results:
        who = nip19.npub_encode(r["provider"])[:20] + "…" if r["provider"] else "?"
        paid = (f"paid {r['payment'].get('amount_msat')} msat" if r["payment"]
                else f"not paid: {r['refusal']}" if r["refusal"] else "not paid")
        say("")
        say("result {} from {}: verdict [bold]{}[/], {}", r["result_id"][:16], who,
            r["verdict"] or ("valid" if r["valid"] else "invalid"), paid)
        for p in r["problems"]:
            say("  [red]problem[/]: {}", p)
        doc = r["result"]
        if doc is None:
            say("  [red]unreadable[/]: {}", r["unreadable"])
            continue
        say("  status: [bold]{}[/]", doc.get("status"))
        if doc.get("error"):
            say("  error: {}", doc.get("error"))
        _show_runs(doc.get("runs"))
        _show_artifacts(doc.get("artifacts"))
        _show_index(doc)


def _show_runs(runs: Any) -> None:
    if not isinstance(runs, list):
        return
    for i, run in enumerate(runs, 1):
        if not isinstance(run, dict):
            continue
        flags = [f for f in ("timed_out", "oom_killed") if run.get(f)]
        console.print(render("  run {}: {} -> exit {} in {} ms{}", i, _cmd(run.get("cmd")),
                             run.get("exit_code"), run.get("duration_ms"),
                             f" ({', '.join(flags)})" if flags else ""), soft_wrap=True)
        for stream in ("stdout", "stderr"):
            preview = run.get(f"{stream}_preview")
            if not isinstance(preview, str) or not preview.strip():
                continue
            size = run.get(f"{stream}_bytes")
            say("    {} ({} bytes):", stream, size)
            lines = preview.rstrip("\n").splitlines()
            for line in lines[-PREVIEW_LINES:]:
                print_text("      " + line)


def _cmd(cmd: Any) -> str:
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return str(cmd)


def _show_artifacts(artifacts: Any) -> None:
    if not isinstance(artifacts, list) or not artifacts:
        return
    say("  artifacts:")
    for a in artifacts:
        if isinstance(a, dict):
            console.print(render("    {} {} bytes sha256:{}", cell(a.get("path")),
                                 a.get("size_bytes"), a.get("sha256")), soft_wrap=True)


def _show_index(doc: dict[str, Any]) -> None:
    """repo_index: the tree hash, counts, and the symbols and dependencies delivered."""
    if "tree_sha256" not in doc:
        return
    files = doc.get("digests")
    say("  tree_sha256: {}  files: {}", doc.get("tree_sha256"),
        len(files) if isinstance(files, list) else "?")
    symbols = doc.get("symbols")  # one entry per Python file: its path and symbols
    if isinstance(symbols, list):
        say("  symbols ({} files):", len(symbols))
        for f in symbols[:PREVIEW_LINES]:
            if not isinstance(f, dict):
                continue
            names = [str(x.get("name")) for x in f.get("symbols") or [] if isinstance(x, dict)]
            say("    {}: {}", f.get("path"), f.get("error") or ", ".join(names) or "-")
    deps = doc.get("dependencies")
    if isinstance(deps, list):
        say("  dependencies ({}):", len(deps))
        for d in deps[:PREVIEW_LINES]:
            if isinstance(d, dict):
                say("    {} {} {} ({}, {})", d.get("ecosystem"), d.get("name"),
                    d.get("spec") or "", d.get("scope"), d.get("file"))
