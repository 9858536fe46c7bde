"""``oa-node git issue``: issues (kind 1621), their NIP-22 comments and statuses, and
bounties paid as zaps (registered on the ``issue`` app of :mod:`.cli`)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import anyio
import typer

from oa_node.cli_kit import cell, print_json, print_text, say, shared_options, text_arg
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.event import Event
from oa_node.plugins.gitafter import nip34
from oa_node.plugins.gitafter.cli import (
    Context,
    ForceOpt,
    MessageOpt,
    Opts,
    StatusFilter,
    _check_may_set,
    _npub,
    _print_comments,
    _short_id,
    _short_npub,
    _status_filter,
    _status_style,
    comment_json,
    issue_app,
    print_listing,
    with_repo,
)
from oa_node.plugins.gitafter.nip34 import RepoRef
from oa_node.plugins.gitafter.remote import GitAfterRemote
from oa_node.wallet import Wallet, Zapper

# --- issues --------------------------------------------------------------------------------------


def _issue_json(issue: nip34.Issue, status: nip34.Status,
                comments: list[Event] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": issue.id, "subject": issue.subject, "labels": list(issue.labels),
        "author": issue.event.pubkey, "created_at": issue.event.created_at,
        "content": issue.event.content, "status": nip34.ISSUE_STATUS_NAMES[status.kind],
        "status_event": status.event.id if status.event else None,
    }
    if comments is not None:
        data["comments"] = [comment_json(c) for c in comments]
    return data


@issue_app.command("create")
@shared_options(Opts)
def issue_create(
    subject: Annotated[str, typer.Option("--subject", "-s", help="The issue's title.")],
    body: Annotated[str, typer.Option(
        "--body", "-m", help="Markdown text ('-' reads stdin).")] = "",
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Label.")] = None,
    *, opts: Opts,
) -> None:
    """Open an issue (kind 1621)."""
    ctx = Context(opts)
    text = text_arg(sys.stdin.read() if body == "-" else body, "--body")
    subject = text_arg(subject, "--subject")
    label = [text_arg(x, "--label") for x in label or []]

    async def go(remote: GitAfterRemote, r: RepoRef) -> tuple[Event, list[str]]:
        return await remote.sign_and_publish(
            nip34.issue_template(r, subject=subject, content=text, labels=label or ()))

    event, ok = with_repo(ctx, go)
    if opts.as_json:
        print_json({"id": event.id, "accepted_by": ok,
                    "nevent": nip19.nevent_encode(event.id, [], event.pubkey, event.kind)})
    else:
        say("opened issue [bold]{}[/]: {}", _short_id(event.id), subject)


@issue_app.command("list")
@shared_options(Opts)
def issue_list(
    status: StatusFilter = "open",
    *, opts: Opts,
) -> None:
    """List issues with their status."""
    ctx = Context(opts)
    wanted = _status_filter(status, nip34.ISSUE_STATUS_NAMES)
    items = with_repo(ctx, lambda remote, r: remote.issues(r))
    items = [(i, s) for i, s in items
             if wanted is None or nip34.ISSUE_STATUS_NAMES[s.kind] in wanted]
    print_listing(
        opts, {"issues": [_issue_json(i, s) for i, s in items]},
        [[_short_id(i.id), cell(name, style=_status_style(name)), cell(i.subject),
          cell(", ".join(i.labels)), _short_npub(i.event.pubkey)]
         for i, s in items for name in (nip34.ISSUE_STATUS_NAMES[s.kind],)],
        empty=f"no {status} issues", columns=("id", "status", "subject", "labels", "author"))


@issue_app.command("show")
@shared_options(Opts)
def issue_show(
    id: Annotated[str, typer.Argument(help="Issue id (hex prefix, note1 or nevent1).")],
    *, opts: Opts,
) -> None:
    """Show an issue, its status and its comments."""
    ctx = Context(opts)
    view, _ = with_repo(ctx, lambda remote, r: remote.issue(r, id))
    if opts.as_json:
        print_json(_issue_json(view.issue, view.status, view.comments))
        return
    name = nip34.ISSUE_STATUS_NAMES[view.status.kind]
    say("[bold]{}[/]  (issue {})", view.issue.subject, view.issue.id)
    say("  author {}", _npub(view.issue.event.pubkey))
    say(f"  status [{_status_style(name)}]{{}}[/]", name)
    if view.issue.labels:
        say("  labels {}", ", ".join(view.issue.labels))
    if view.issue.event.content:
        print_text(view.issue.event.content)
    _print_comments(view.comments)


@issue_app.command("comment")
@shared_options(Opts)
def issue_comment(
    id: Annotated[str, typer.Argument(help="Issue or proposal id the thread belongs to.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Comment text ('-': stdin).")],
    reply_to: Annotated[str | None, typer.Option(
        help="Answer this comment in the thread (default: the root).")] = None,
    *, opts: Opts,
) -> None:
    """Comment on an issue, patch set or PR (NIP-22 kind 1111)."""
    ctx = Context(opts)
    text = text_arg(sys.stdin.read() if message == "-" else message, "--message")
    from oa_node.plugins.gitafter.remote import pick

    async def go(remote: GitAfterRemote, r: RepoRef) -> tuple[Event, list[str]]:
        root = await remote.thread_root(r, id)
        parent = root
        if reply_to:
            parent = pick(reply_to, await remote.comments(root), "comment")
        return await remote.sign_and_publish(nip34.comment_template(root, parent, text))

    event, ok = with_repo(ctx, go)
    if opts.as_json:
        print_json({"id": event.id, "accepted_by": ok})
    else:
        say("commented ({})", _short_id(event.id))


def _issue_status(kind: int, id: str, message: str, force: bool, opts: Opts) -> None:
    ctx = Context(opts)

    async def go(remote: GitAfterRemote, r: RepoRef) -> dict[str, Any]:
        signer = remote.require_signer()
        view, statuses = await remote.issue(r, id)
        _check_may_set(signer, view.issue.event, r, force, "issue")
        event, ok = await remote.set_status(kind, view.issue.event, r, statuses,
                                            content=message)
        return {"id": view.issue.id, "status": nip34.ISSUE_STATUS_NAMES[kind],
                "event": event.id, "accepted_by": ok}

    out = with_repo(ctx, go)
    if opts.as_json:
        print_json(out)
    else:
        say("issue {} is now {}", _short_id(out["id"]), out["status"])


IssueIdArg = Annotated[str, typer.Argument(help="Issue id.")]


@issue_app.command("close")
@shared_options(Opts)
def issue_close(
    id: IssueIdArg,
    resolved: Annotated[bool, typer.Option(
        "--resolved", help="Mark resolved (1631) rather than closed (1632).")] = False,
    message: MessageOpt = "", force: ForceOpt = False,
    *, opts: Opts,
) -> None:
    """Close an issue (1632), or resolve it (1631) with --resolved."""
    _issue_status(nip34.STATUS_APPLIED if resolved else nip34.STATUS_CLOSED, id, message,
                  force, opts)


@issue_app.command("reopen")
@shared_options(Opts)
def issue_reopen(id: IssueIdArg, message: MessageOpt = "", force: ForceOpt = False, *,
                 opts: Opts) -> None:
    """Reopen an issue (1630)."""
    _issue_status(nip34.STATUS_OPEN, id, message, force, opts)


@issue_app.command("bounty")
@shared_options(Opts)
def issue_bounty(
    id: IssueIdArg,
    sats: Annotated[int, typer.Argument(help="Amount in satoshis.", min=1)],
    comment: Annotated[str, typer.Option(help="Zap comment.")] = "",
    *, opts: Opts,
) -> None:
    """Put a bounty on an issue: zap it (NIP-57) through the node's wallet."""
    ctx = Context(opts)
    if ctx.config_path is None:
        raise UserError("a bounty is paid from the node's wallet: pass --config with the "
                        "zaps plugin and a wallet configured")
    zapper = ctx.node.capability(Zapper)
    if zapper is None:
        raise UserError("no zapper: the zaps plugin is not loaded or has no wallet configured "
                        "(configure a wallet, e.g. an NWC connection, in the node config)")

    async def go(remote: GitAfterRemote, r: RepoRef) -> dict[str, Any]:
        view, _ = await remote.issue(r, id)
        ev = view.issue.event
        target = nip19.nevent_encode(ev.id, list(r.relays[:2]), ev.pubkey, ev.kind)
        try:
            res = await zapper.zap(target, sats * 1000, comment or
                                   f"bounty for: {view.issue.subject}",
                                   relays=list(remote.pool.relays), receipt_timeout=opts.timeout)
        finally:
            await _close_node_io(ctx)
        return {"issue": ev.id, "sats": sats, "zap_request": res.zap_request.id,
                "bolt11": res.bolt11, "preimage": res.payment.preimage,
                "receipt": res.receipt.id if res.receipt is not None else None}

    out = with_repo(ctx, go)
    if opts.as_json:
        print_json(out)
    else:
        say("zapped {} sats to issue {}{}", sats, _short_id(out["issue"]),
            f" (receipt {_short_id(out['receipt'])})" if out["receipt"] else
            " (no receipt seen yet)")


async def _close_node_io(ctx: Context) -> None:
    """The zapper used the node's pool and wallet outside a running node: close them."""
    with anyio.CancelScope(shield=True):
        wallet = ctx.node.capability(Wallet)
        close = getattr(wallet, "close", None)
        if close is not None:
            await close()
        await ctx.node.pool.close()
