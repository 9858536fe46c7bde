"""``oa-node git list`` and ``oa-node git show``: read proposals and their patches, comments
and trajectories (registered on the ``git`` app of :mod:`.cli` when the plugin's commands
are)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from oa_node.cli_kit import (
    cell,
    clean,
    print_json,
    print_text,
    say,
    shared_options,
    warn,
)
from oa_node.errors import UserError
from oa_node.nostr.event import Event
from oa_node.plugins.gitafter import nip34
from oa_node.plugins.gitafter.cli import (
    Context,
    IdArg,
    Opts,
    RevisionOpt,
    StatusFilter,
    _npub,
    _print_comments,
    _short_id,
    _short_npub,
    _status_filter,
    _status_style,
    app,
    print_listing,
    proposal_json,
    with_repo,
)
from oa_node.plugins.gitafter.nip34 import Proposal, RepoRef, short
from oa_node.plugins.gitafter.remote import GitAfterRemote


@app.command("list")
@shared_options(Opts)
def list_(
    status: StatusFilter = "open",
    *, opts: Opts,
) -> None:
    """List proposals (patch sets and pull requests) with their status."""
    ctx = Context(opts)
    wanted = _status_filter(status, nip34.STATUS_NAMES)
    props, warnings = with_repo(ctx, lambda remote, r: remote.proposals(r))
    props = [p for p in props if wanted is None or p.status.name in wanted]
    for w in warnings:
        warn("{}", w)
    print_listing(
        opts, {"proposals": [proposal_json(p) for p in props], "warnings": warnings},
        [[_short_id(p.id), cell(p.status.name, style=_status_style(p.status.name)), p.kind,
          cell(p.subject), _short_npub(p.author),
          str(len(p.commit_patches)) if p.pr is None else "PR", str(len(p.revisions) + 1)]
         for p in props],
        empty=f"no {status} proposals",
        columns=("id", "status", "kind", "subject", "author", "commits", "rev"))


@app.command()
@shared_options(Opts)
def show(
    id: IdArg,
    revision: RevisionOpt = None,
    patches: Annotated[bool, typer.Option("--patches", help="Print the patch texts.")] = False,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Print only the patches, byte for byte, as an mbox for `git am` "
        "(cover letter left out).")] = False,
    check_trajectory: Annotated[bool, typer.Option(
        "--check-trajectory", help="Fetch the attached trajectory from the repository's "
        "relays and check its hash and continuity.")] = False,
    allow_hinted_relays: Annotated[bool, typer.Option(
        "--allow-hinted-relays", help="With --check-trajectory, also connect to the relay "
        "the proposal names for its trajectory (its author chose it).")] = False,
    *, opts: Opts,
) -> None:
    """Show a proposal: status, revisions, commits, trajectory and comments."""
    ctx = Context(opts)

    async def go(remote: GitAfterRemote,
                 r: RepoRef) -> tuple[Proposal, list[Event], dict[str, Any] | None]:
        p, _ = await remote.proposal(r, id, revision=revision)
        comments = await remote.comments(p.root)
        check = None
        if check_trajectory:
            check = await _check_trajectory(p, remote, allow_hinted_relays)
        return p, comments, check

    p, comments, check = with_repo(ctx, go)
    if raw:
        if p.pr is not None:
            raise UserError(f"{short(p.id)} is a pull request: it has no patches to print "
                            "(use `oa-node git checkout`)")
        write_raw("".join(x.event.content if x.event.content.endswith("\n")
                          else x.event.content + "\n" for x in p.commit_patches))
        return
    if opts.as_json:
        data = proposal_json(p, comments)
        if check is not None:
            data["trajectory_check"] = check
        if patches and p.pr is None:
            for d, x in zip(data["patches"], p.patches, strict=True):
                d["content"] = x.event.content
        print_json(data)
        return
    say("[bold]{}[/]  ({} {})", p.subject, p.kind, p.id)
    say("  author  {}", _npub(p.author))
    by = f" by {_short_npub(p.status.event.pubkey)}" if p.status.event else ""
    say(f"  status  [{_status_style(p.status.name)}]{{}}[/]{{}}", p.status.name, by)
    if p.status.merge_commit:
        say("  merged  {}", p.status.merge_commit)
    if p.status.applied_as:
        say("  applied {}", ", ".join(c[:12] for c in p.status.applied_as))
    if p.revisions:
        shown = p.revision or p.root
        which = [p.root.id, *(e.id for e in p.revisions)].index(shown.id) + 1
        say("  revision {} of {} ({})", which, len(p.revisions) + 1, _short_id(shown.id))
    traj = p.trajectory
    if traj is not None:
        say("  trajectory {} on {} hash {}", traj.session, traj.relay or "?",
            traj.sha256 or "(none)")
    if check is not None:
        verdict = "[green]ok[/]" if check["ok"] else "[red]FAILED[/]"
        say(f"  trajectory check {verdict}: {{}} events, computed hash {{}}", check["events"],
            check["computed_hash"])
        for problem in check["problems"]:
            say("    {}", problem)
    if p.pr is not None:
        say("  tip     {}  branch {}", p.pr.tip, p.pr.branch_name or "-")
        say("  clone   {}", ", ".join(p.pr.clone))
        if p.root.content:
            print_text(p.root.content)
    else:
        for i, x in enumerate(p.patches):
            offset = 0 if p.patches[0].is_cover_letter else 1
            label = "cover" if x.is_cover_letter else str(i + offset)
            say("  [{}] {} {}{}", label, _short_id(x.id), x.subject,
                f"  commit {x.commit[:12]}" if x.commit else "")
            if patches:
                print_patch(x.event.content)
    _print_comments(comments)


def print_patch(text: str) -> None:
    """A patch for a person to read or copy: as it is (tabs, trailing spaces, long lines,
    no wrapping: Rich would turn tabs into spaces, and the copy would not apply), except
    what a terminal would obey instead of show (control and bidi characters: made visible;
    CRLF shown as LF). ``--raw`` gives the exact bytes."""
    shown = clean(text, one_line=False, limit=None)
    write_raw(shown if shown.endswith("\n") else shown + "\n")


def write_raw(text: str) -> None:
    """``text`` on stdout exactly (CR, control characters and all): a patch piped to
    ``git am`` must be the bytes that were sent, never a rendering of them."""
    data = text.encode("utf-8", "surrogateescape")
    buffer = getattr(sys.stdout, "buffer", None)
    sys.stdout.flush()
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        sys.stdout.write(text)


async def _check_trajectory(p: Proposal, remote: GitAfterRemote,
                            allow_hinted_relays: bool = False) -> dict[str, Any]:
    """Rebuild the attached trajectory from relays and compare its hash with the tag; the
    relay the proposal names is contacted only when the user allows it."""
    from oa_node.client import RelayPool
    from oa_node.trajectory import TrajectoryError, read_trajectory, reading_relays

    traj = p.trajectory
    if traj is None:
        raise UserError(f"proposal {short(p.id)} has no trajectory attached")
    relays = reading_relays(remote.pool.relays, traj.relay,
                            allow_hinted_relays=allow_hinted_relays)
    hinted = reading_relays(relays, traj.relay, allow_hinted_relays=True) != relays
    try:
        async with RelayPool(relays) as pool:
            report = await read_trajectory(pool, traj.session, expected_hash=traj.sha256,
                                           timeout=remote.timeout)
    except TrajectoryError as exc:
        if not hinted:
            raise
        raise UserError(f"{exc} (the proposal names another relay for it, not contacted:"
                        " pass --allow-hinted-relays to read it there)") from None
    return {"ok": report.ok, "computed_hash": report.computed_hash,
            "expected_hash": traj.sha256, "events": len(report.steps),
            "problems": list(report.problems)}
