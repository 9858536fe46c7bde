"""``oa-node git`` commands that bring proposals in and decide them: ``apply``,
``checkout``, ``merge``, ``close``, ``reopen`` and ``draft`` (registered on the ``git`` app
of :mod:`.cli` when the plugin's commands are)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from oa_node import gitsafe
from oa_node.cli_kit import print_json, say, shared_options, warn
from oa_node.errors import UserError
from oa_node.plugins.gitafter import gitapply, gitops, nip34
from oa_node.plugins.gitafter.cli import (
    AllowSchemeOpt,
    Context,
    ForceOpt,
    IdArg,
    MessageOpt,
    Opts,
    RevisionOpt,
    _check_may_set,
    _parse_repo_address,
    _short_id,
    _status_style,
    app,
    with_repo,
)
from oa_node.plugins.gitafter.nip34 import Proposal, RepoRef, short
from oa_node.plugins.gitafter.remote import GitAfterRemote

# --- apply / checkout ---------------------------------------------------------------------------


def _fetch_schemes(allow_scheme: list[str] | None) -> tuple[str, ...]:
    schemes = tuple(allow_scheme or gitapply.DEFAULT_FETCH_SCHEMES)
    bad = [s for s in schemes if s not in gitsafe.SCHEMES]
    if bad:
        raise UserError(f"--allow-scheme: {', '.join(bad)} is not one of "
                        f"{', '.join(gitsafe.SCHEMES)}")
    return schemes


def _branch_for(p: Proposal) -> str:
    name = p.pr.branch_name if p.pr is not None and p.pr.branch_name else p.subject
    return f"pr/{gitops.slug(name)}-{short(p.id)}"


@app.command()
@shared_options(Opts)
def apply(
    id: Annotated[str | None, typer.Argument(
        help="Any event of the proposal: its root, a revision, any patch (hex or hex prefix, "
        "note1, nevent1); with --from-file, optional when the file holds one proposal.")
    ] = None,
    revision: RevisionOpt = None,
    from_file: Annotated[Path | None, typer.Option(
        "--from-file", help="Read the events from this file (a JSON array or JSON lines) "
        "instead of relays: offline review. Ids and signatures are checked.")] = None,
    branch: Annotated[str | None, typer.Option(
        help="Branch to create (default: pr/SUBJECT-ID).")] = None,
    here: Annotated[bool, typer.Option(
        "--here", help="Apply onto the current branch instead of a new one.")] = False,
    onto: Annotated[str | None, typer.Option(
        help="Start the new branch here (default: the patches' parent commit, else HEAD).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing branch.")] = False,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Keep commits whose ids differ from the proposal's.")] = False,
    allow_scheme: AllowSchemeOpt = None,
    *, opts: Opts,
) -> None:
    """Apply a patch set with `git am` on a branch named after it.

    Commit ids are verified where the patches give them.
    For a pull request this fetches its tip like `checkout`.
    A failure leaves the working tree as it was."""
    schemes = _fetch_schemes(allow_scheme)
    ctx = Context(opts)
    if from_file is not None:
        from oa_node.plugins.gitafter.remote import offline_proposal, read_event_file

        p = offline_proposal(read_event_file(from_file), id, revision=revision,
                             maintainers=_stored_owner(ctx))
    elif id is None:
        raise UserError("name the proposal to apply (or pass --from-file FILE)")
    else:
        p, _ = with_repo(ctx, lambda remote, r: remote.proposal(r, id, revision=revision))
    if p.pr is not None:
        _checkout_pr(ctx, p, branch, force, opts.as_json, schemes)
        return
    target = None if here else (branch or _branch_for(p))
    result = gitapply.apply_series(ctx.repo, p.patches, target, onto=onto, force=force,
                                 verify=not no_verify)
    data = {"id": p.id, "branch": result.branch, "base": result.base,
            "commits": result.commits, "verified": result.verified,
            "checks": [c.__dict__ for c in result.checks]}
    if opts.as_json:
        print_json(data)
        return
    say("applied {} commit(s) of {} on [bold]{}[/] (base {})", len(result.commits),
        _short_id(p.id), result.branch, result.base[:12])
    unverified = [c for c in result.checks if c.ok is None]
    if result.verified:
        say("  commit ids match the proposal")
    elif unverified:
        say("  {} commit(s) not compared (no commit tag, or applied on a different base)",
            len(unverified))
    for c in result.checks:
        if c.ok is False:
            warn("commit {} is not the proposal's {}: its {} differs", c.actual[:12],
                 (c.expected or "?")[:12], c.differs or "content")


def _stored_owner(ctx: Context) -> list[str]:
    """The owner of the repository this clone knows (``nostr.repo``), read without relays."""
    address = ctx.opts.repo or gitops.config_get(ctx.repo, gitops.CONFIG_REPO)
    return [_parse_repo_address(address)[0]] if address else []


def _checkout_pr(ctx: Context, p: Proposal, branch: str | None, force: bool,
                 as_json: bool, allowed_schemes: Sequence[str]) -> None:
    assert p.pr is not None
    source = gitapply.fetch_tip(ctx.repo, p.pr.clone, p.pr.tip, p.pr.fetch_refs,
                              allowed_schemes=allowed_schemes)
    name = branch or _branch_for(p)
    gitapply.checkout_commit(ctx.repo, p.pr.tip, name, force=force)
    if as_json:
        print_json({"id": p.id, "branch": name, "tip": p.pr.tip, "fetched_from": source})
    else:
        say("checked out {} tip {} on [bold]{}[/] (from {})", _short_id(p.id), p.pr.tip[:12],
            name, source)


@app.command()
@shared_options(Opts)
def checkout(
    id: IdArg,
    revision: RevisionOpt = None,
    branch: Annotated[str | None, typer.Option(
        help="Branch to create (default: pr/NAME-ID).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing branch.")] = False,
    allow_scheme: AllowSchemeOpt = None,
    *, opts: Opts,
) -> None:
    """Check out a proposal on its own branch.

    A pull request's tip is fetched from its clone URLs: only over the allowed schemes,
    never a URL with credentials or one git would read as an option.
    A patch set is applied at its parent commit."""
    schemes = _fetch_schemes(allow_scheme)
    ctx = Context(opts)
    p, _ = with_repo(ctx, lambda remote, r: remote.proposal(r, id, revision=revision))
    if p.pr is not None:
        _checkout_pr(ctx, p, branch, force, opts.as_json, schemes)
        return
    name = branch or _branch_for(p)
    result = gitapply.apply_series(ctx.repo, p.patches, name, force=force, verify=False)
    if opts.as_json:
        print_json({"id": p.id, "branch": name, "base": result.base, "commits": result.commits,
                    "verified": result.verified})
    else:
        say("checked out {} on [bold]{}[/] ({} commit(s) on {})", _short_id(p.id), name,
            len(result.commits), result.base[:12])


# --- statuses -----------------------------------------------------------------------------------


def _merge_target(ctx: Context, into: str | None) -> str:
    """The branch a proposal was merged into: ``--into``, else the current branch unless
    it is a proposal branch (``pr/...``), else main/master."""
    if into:
        gitops.resolve_commit(ctx.repo, into)
        return into
    current = gitops.current_branch(ctx.repo)
    if current and not current.startswith("pr/"):
        return current
    for name in ("main", "master"):
        if gitops.branch_exists(ctx.repo, name):
            return name
    raise UserError("cannot tell which branch the proposal was merged into: pass --into")


def _merge_info(ctx: Context, p: Proposal, merge_commit: str | None, applied_as: list[str],
                into: str | None) -> tuple[str | None, list[str], str]:
    """What a 1631 event says happened: given explicitly, else read from the target branch
    (a merge commit whose parents include the tip, or the commits found in its history)."""
    target = _merge_target(ctx, into)
    if merge_commit or applied_as:
        mc = gitops.resolve_commit(ctx.repo, merge_commit) if merge_commit else None
        return mc, [gitops.resolve_commit(ctx.repo, c) for c in applied_as], target
    tip_commit = ctx.repo.commit(target)

    def merged_by(tip: str) -> str | None:
        parents = [c.hexsha for c in tip_commit.parents]
        return tip_commit.hexsha if len(parents) > 1 and tip in parents[1:] else None

    if p.pr is not None:
        if gitapply.ancestors_in(ctx.repo, [p.pr.tip], target):
            mc = merged_by(p.pr.tip)
            return mc, ([] if mc else [p.pr.tip]), target
        return None, [], target
    proposed = [x.commit for x in p.commit_patches if x.commit]
    if proposed and len(proposed) == len(p.commit_patches) and \
            gitapply.ancestors_in(ctx.repo, proposed, target):
        mc = merged_by(proposed[-1])
        return mc, ([] if mc else proposed), target
    branch = _branch_for(p)
    if gitops.branch_exists(ctx.repo, branch):
        commits = gitops.branch_commits(ctx.repo, branch, f"{branch}~{len(p.commit_patches)}")
        if commits and gitapply.ancestors_in(ctx.repo, commits, target):
            mc = merged_by(commits[-1])
            return mc, ([] if mc else commits), target
    # Applied on another base or rebased: the same changes, found by patch-id.
    commits = gitapply.applied_by_patch_id(ctx.repo, [x.event.content for x in p.commit_patches],
                                         target)
    if commits:
        mc = merged_by(commits[-1])
        return mc, ([] if mc else commits), target
    return None, [], target


def _status_command(kind: int, id: str, message: str, force: bool, opts: Opts,
                    merge_commit: str | None = None, applied_as: list[str] | None = None,
                    into: str | None = None) -> None:
    """What ``merge``, ``close``, ``reopen`` and ``draft`` do: publish a status (1630-1633)
    for a proposal, as a maintainer or its author."""
    ctx = Context(opts)

    async def go(remote: GitAfterRemote, r: RepoRef) -> dict[str, Any]:
        signer = remote.require_signer()
        p, statuses = await remote.proposal(r, id)
        _check_may_set(signer, p.root, r, force, "proposal")
        extra: dict[str, Any] = {}
        target = None
        if kind == nip34.STATUS_APPLIED:
            mc, commits, target = _merge_info(ctx, p, merge_commit, applied_as or [], into)
            if not mc and not commits and not force:
                raise UserError(
                    f"the commits of {short(p.id)} are not in {target} (neither by id nor by "
                    "patch-id): merge or apply them there first, name them with "
                    "--merge-commit/--applied-as, or pass --force to mark it applied anyway")
            extra = {"merge_commit": mc, "applied_commits": commits,
                     "applied_patches": [x.event for x in p.patches]}
        event, ok = await remote.set_status(kind, p.root, r, statuses, content=message,
                                            revision=p.revision, **extra)
        return {"id": p.id, "status": nip34.STATUS_NAMES[kind], "event": event.id,
                "accepted_by": ok, "merge_commit": extra.get("merge_commit"),
                "applied_as": extra.get("applied_commits", []), "into": target}

    out = with_repo(ctx, go)
    if opts.as_json:
        print_json(out)
        return
    say(f"{{}} is now [{_status_style(out['status'])}]{{}}[/] (status {{}})",
        _short_id(out["id"]), out["status"], _short_id(out["event"]))
    if out["merge_commit"]:
        say("  merge commit {}", out["merge_commit"])
    elif out["applied_as"]:
        say("  applied as {}", ", ".join(c[:12] for c in out["applied_as"]))
    elif kind == nip34.STATUS_APPLIED:
        warn("the proposal's commits are not in {}, so the status names no commits (use "
             "--into, --merge-commit or --applied-as)", out["into"], label="note")




@app.command()
@shared_options(Opts)
def merge(
    id: IdArg,
    merge_commit: Annotated[str | None, typer.Option(
        help="The merge commit (default: found in HEAD).")] = None,
    applied_as: Annotated[list[str] | None, typer.Option(
        "--applied-as", help="Commit the patches became (repeatable; default: found).")] = None,
    into: Annotated[str | None, typer.Option(
        help="Branch it was merged into (default: the current branch, or main/master when on "
        "a pr/ branch).")] = None,
    message: MessageOpt = "",
    force: Annotated[bool, typer.Option(
        "--force", help="Publish even when its commits are not in the target branch, or "
        "readers will ignore it (not a maintainer/author).")] = False,
    *, opts: Opts,
) -> None:
    """Mark a proposal applied/merged (1631), naming the merge or applied commits.

    Refused while its commits (or the same changes, by patch-id) are not in the target
    branch, unless --force."""
    _status_command(nip34.STATUS_APPLIED, id, message, force, opts, merge_commit, applied_as,
                    into)


def _status_setter(kind: int, name: str, doc: str) -> None:
    """Register ``oa-node git NAME ID``: publish status ``kind`` for a proposal."""

    @app.command(name, help=doc)
    @shared_options(Opts)
    def command(id: IdArg, message: MessageOpt = "", force: ForceOpt = False, *,
                opts: Opts) -> None:
        _status_command(kind, id, message, force, opts)


_status_setter(nip34.STATUS_CLOSED, "close", "Close a proposal (1632).")
_status_setter(nip34.STATUS_OPEN, "reopen", "Reopen a proposal (1630).")
_status_setter(nip34.STATUS_DRAFT, "draft", "Mark a proposal as a draft (1633).")
