"""``oa-node git send``: commits as patches (1617) or a pull request (1618), a new revision
of a proposal, with a NIP-SA trajectory attached (registered on the ``git`` app of
:mod:`.cli` when the plugin's commands are)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from oa_node.cli_kit import print_json, say, shared_options
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.event import Event, compute_event_id
from oa_node.plugins.gitafter import gitops, nip34
from oa_node.plugins.gitafter.cli import (
    Context,
    Opts,
    _parse_pubkey,
    _short_id,
    app,
    with_repo,
)
from oa_node.plugins.gitafter.nip34 import Proposal, RepoRef, TrajectoryRef
from oa_node.plugins.gitafter.remote import GitAfterRemote
from oa_node.signer import Signer
from oa_node.trajectory import Trajectories

# --- send ---------------------------------------------------------------------------------------


async def _trajectory_ref(ctx: Context, remote: GitAfterRemote, session: str | None,
                          relay: str | None, digest: str | None) -> TrajectoryRef | None:
    """The trajectory tags for ``send``: the hash given, else computed from relays through
    the NIP-SA plugin's :class:`~oa_node.trajectory.Trajectories` capability."""
    if session is None:
        if digest or relay:
            raise UserError("--trajectory-hash/--trajectory-relay need --trajectory SESSION")
        return None
    if digest is not None:
        return TrajectoryRef(session, relay or "", nip34.check_trajectory_hash(digest))
    cap = ctx.node.capability(Trajectories)
    if cap is None:
        raise UserError("computing a trajectory's hash needs the NIP-SA plugin "
                        "(node.capability(Trajectories)): enable it in the config, or pass "
                        "--trajectory-hash SHA256")
    try:
        report = await cap.read(session, expected_hash=None, timeout=remote.timeout)
    except UserError:
        raise
    if not report.ok:
        raise UserError(f"trajectory {session} does not check out: "
                        + "; ".join(report.problems[:3]))
    default_relay = relay or (ctx.node_relays() or remote.pool.relays or [""])[0]
    return TrajectoryRef(session, default_relay, report.computed_hash)


@app.command()
@shared_options(Opts)
def send(
    revision_range: Annotated[str | None, typer.Argument(
        metavar="[REVISION-RANGE]",
        help="Commits to send, e.g. HEAD~3 or main..feature (default: upstream..HEAD).")] = None,
    cover_letter: Annotated[bool, typer.Option(
        "--cover-letter", help="Start the series with a cover letter (--title/--description).")
    ] = False,
    title: Annotated[str, typer.Option(help="Cover letter or pull request title.")] = "",
    description: Annotated[str, typer.Option(help="Cover letter or PR description.")] = "",
    in_reply_to: Annotated[str | None, typer.Option(
        "--in-reply-to", help="Send a new revision of this proposal (patch set or PR).")] = None,
    pr: Annotated[bool, typer.Option(
        "--pr", help="Send a pull request (1618) even if the patches would fit.")] = False,
    clone_url: Annotated[list[str] | None, typer.Option(
        "--clone-url", help="Where to push a PR's tip (refs/nostr/EVENT-ID) and where others fetch "
        "it (repeatable).")] = None,
    branch_name: Annotated[str | None, typer.Option(
        help="Branch name suggested in a PR (default: the current branch).")] = None,
    trajectory: Annotated[str | None, typer.Option(
        "--trajectory", help="NIP-SA trajectory session that produced this work.")] = None,
    trajectory_relay: Annotated[str | None, typer.Option(
        help="Relay holding the trajectory.")] = None,
    trajectory_hash: Annotated[str | None, typer.Option(
        help="The trajectory's sha256 (computed from relays when the NIP-SA plugin is on).")
    ] = None,
    max_patch_bytes: Annotated[int, typer.Option(
        help="A patch bigger than this (UTF-8 bytes) makes the series a PR (NIP-34: 60kb).")
    ] = nip34.MAX_PATCH_BYTES,
    cc: Annotated[list[str] | None, typer.Option(
        "--cc", help="Also notify this user (npub or hex; repeatable).")] = None,
    *, opts: Opts,
) -> None:
    """Send commits as patches (1617), or as a pull request (1618) when too big.

    One patch event per commit, threaded from the first.
    With --in-reply-to: a new revision of that proposal (of a pull request: an update, 1619).
    A PR's tip is pushed to refs/nostr/EVENT-ID on every --clone-url before it is sent."""
    ctx = Context(opts)
    shas = gitops.commits_in_range(ctx.repo, revision_range)
    mention = [_parse_pubkey(p) for p in cc or []]

    async def go(remote: GitAfterRemote, r: RepoRef) -> dict[str, Any]:
        signer = remote.require_signer()
        traj = await _trajectory_ref(ctx, remote, trajectory, trajectory_relay,
                                     trajectory_hash)
        previous: Proposal | None = None
        if in_reply_to:
            previous, _ = await remote.proposal(r, in_reply_to)
        series = None
        as_pr = pr or (previous is not None and previous.pr is not None)
        if not as_pr:
            series = gitops.format_patches(ctx.repo, shas, cover_letter=cover_letter,
                                           title=title, description=description)
            texts = ([series.cover_letter] if series.cover_letter else []) + series.patches
            biggest = max(len(t.encode("utf-8")) for t in texts)
            if biggest > max_patch_bytes:
                as_pr = True
                if not clone_url:
                    raise UserError(
                        f"a patch is {biggest} bytes, over the {max_patch_bytes}-byte limit for "
                        "a patch event (NIP-34: 60kb), so this must be a pull request: pass "
                        "--clone-url URL where its tip can be pushed and fetched")
        if as_pr:
            return await _send_pr(ctx, remote, r, signer, shas, previous, traj)
        assert series is not None
        return await _send_patches(ctx, remote, r, series, shas, previous, traj, mention)

    async def _send_patches(ctx: Context, remote: GitAfterRemote, r: RepoRef,
                            series: gitops.FormattedSeries, shas: list[str],
                            previous: Proposal | None, traj: TrajectoryRef | None,
                            mention: list[str]) -> dict[str, Any]:
        now = int(time.time())
        if previous is not None:  # the newest revision wins: never tie with an older one
            now = nip34.next_created_at(now, [previous.root, *previous.revisions])
        items: list[tuple[str, nip34.CommitObject | None, bool]] = []
        if series.cover_letter:
            items.append((series.cover_letter, None, True))
        for sha, text in zip(shas, series.patches, strict=True):
            items.append((text, gitops.commit_object(ctx.repo, sha), False))
        sent: list[Event] = []
        accepted: set[str] = set()
        revision_of = previous.root.id if previous else None
        for i, (text, commit, is_cover) in enumerate(items):
            template = nip34.patch_template(
                r, text, commit=commit,
                thread_root=sent[0].id if sent else None,
                reply_to=sent[-1].id if sent else None,
                revision_of=revision_of if not sent else None,
                cover_letter=is_cover, trajectory=traj if i == 0 else None,
                mention=mention, created_at=now + i)
            event, ok = await remote.sign_and_publish(template)
            sent.append(event)
            accepted.update(ok)
        return {"kind": "patches", "root": sent[0].id, "events": [e.id for e in sent],
                "commits": shas, "revision_of": revision_of, "accepted_by": sorted(accepted),
                "nevent": nip19.nevent_encode(sent[0].id, list(r.relays[:2]), sent[0].pubkey,
                                              nip34.PATCH)}

    async def _send_pr(ctx: Context, remote: GitAfterRemote, r: RepoRef, signer: Signer,
                       shas: list[str], previous: Proposal | None,
                       traj: TrajectoryRef | None) -> dict[str, Any]:
        if not clone_url:
            raise UserError("a pull request needs --clone-url URL: a repository you can push "
                            "its tip to and others can fetch from")
        tip = shas[-1]
        first = gitops.commit_object(ctx.repo, shas[0])
        base = first.parents[0] if first.parents else None
        now = int(time.time())
        if previous is not None and previous.pr is not None:
            if previous.author != signer.public_key and signer.public_key not in \
                    r.all_maintainers:
                raise UserError("only the PR's author or a maintainer can update it")
            template = nip34.pr_update_template(
                r, previous.pr.event, tip=tip, clone=clone_url, merge_base=base,
                trajectory=traj, created_at=max(now, previous.pr.event.created_at + 1,
                                                (previous.pr.updated_by.created_at + 1
                                                 if previous.pr.updated_by else 0)))
        else:
            subject = title or str(ctx.repo.commit(shas[0]).summary)
            template = nip34.pr_template(
                r, subject=str(subject), description=description, tip=tip, clone=clone_url,
                branch_name=branch_name or gitops.current_branch(ctx.repo), merge_base=base,
                revision_of=previous.root.id if previous else None, trajectory=traj,
                created_at=now)
        # NIP-34: push the tip to refs/nostr/<event id> before signing; the id does not
        # depend on the signature, so it is known from the template.
        assert template.created_at is not None
        event_id = compute_event_id(signer.public_key, template.created_at, template.kind,
                                    template.tags, template.content)
        for url in clone_url or []:
            gitops.push_ref(ctx.repo, url, tip, f"refs/nostr/{event_id}")
        event, ok = await remote.sign_and_publish(template)
        if event.id != event_id:
            raise UserError("the signer changed the event while signing; the pushed ref "
                            f"refs/nostr/{event_id} does not match {event.id}")
        return {"kind": "pr-update" if event.kind == nip34.PULL_REQUEST_UPDATE else "pr",
                "root": previous.root.id if previous and previous.pr else event.id,
                "events": [event.id], "commits": shas, "tip": tip,
                "revision_of": previous.root.id if previous else None,
                "accepted_by": sorted(ok)}

    out = with_repo(ctx, go)
    if opts.as_json:
        print_json(out)
        return
    what = {"patches": f"{len(out['events'])} patch event(s)", "pr": "pull request",
            "pr-update": "pull request update"}[out["kind"]]
    say("sent {} for {} commit(s): [bold]{}[/]{}", what, len(out["commits"]),
        _short_id(out["root"]), f" (revision of {_short_id(out['revision_of'])})"
        if out.get("revision_of") else "")
    say("  relays {}", ", ".join(out["accepted_by"]))
    if out.get("nevent"):
        say("  nevent {}", Text(out["nevent"]))  # bech32 we made: whole, never cut
