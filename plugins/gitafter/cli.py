"""``oa-node git``: NIP-34 repositories, patches, pull requests, issues and statuses.

Every command works in the git repository of the current directory (or ``-C DIR``). The
repository's announcement address and relays are kept in its git config (``nostr.repo``,
``nostr.relays``) once ``init`` ran or the repository was found on a relay by its earliest
unique commit. The key is ``--key-file``, else the node's signer from ``--config``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from rich.table import Table
from rich.text import Text

from oa_node.cli_kit import (
    JsonOption,
    TimeoutOption,
    config_option,
    console,
    print_json,
    print_text,
    pubkey_arg,
    say,
    shared_options,
    warn,
)
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.plugins.gitafter import gitapply, gitops, nip34
from oa_node.plugins.gitafter.nip34 import Proposal, RepoRef
from oa_node.plugins.gitafter.remote import GitAfterRemote
from oa_node.signer import LocalSigner, Signer

if TYPE_CHECKING:
    from oa_node.client import RelayPool
    from oa_node.node import Node

T = TypeVar("T")

app = typer.Typer(
    help="Git collaboration over Nostr (NIP-34): announce a repository, send patches and pull "
    "requests, review, apply, merge, and track issues.",
    no_args_is_help=True,
)
issue_app = typer.Typer(help="Issues (kind 1621) and their NIP-22 comments.",
                        no_args_is_help=True)
app.add_typer(issue_app, name="issue")

# --- options every command shares ---------------------------------------------------------------

ConfigOpt = config_option(
    "Node config: its key signs, its relays are a fallback, its plugins (zaps, NIP-SA) "
    "are used when present.")
KeyFileOpt = Annotated[Path | None, typer.Option(
    "--key-file", help="Sign with this key file (hex or nsec) instead of the node's signer.")]
RelayOpt = Annotated[list[str] | None, typer.Option(
    "--relay", "-r", help="Relay to use (repeatable), besides the repository's own relays; "
    "needed once to find a repository this clone does not know yet.")]
DirOpt = Annotated[Path, typer.Option("-C", "--dir", help="The git repository to work in.")]
RepoOpt = Annotated[str | None, typer.Option(
    "--repo", help="The announced repository (naddr1... or 30617:PUBKEY:ID), when this "
    "clone does not know it yet.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Publish even though readers will ignore it (not a maintainer/author).")]
AllowSchemeOpt = Annotated[list[str] | None, typer.Option(
    "--allow-scheme", help="A URL scheme a pull request's tip may be fetched over "
    f"(repeatable; default: {', '.join(gitapply.DEFAULT_FETCH_SCHEMES)}; add 'file' for "
    "local paths, 'http' for plain HTTP).")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Text for the event.")]
RevisionOpt = Annotated[str | None, typer.Option(
    "--revision", help="Which revision: 1 for the original, 2 for the first revision... or "
    "a revision's event id (default: the newest).")]


IdArg = Annotated[str, typer.Argument(
    help="Any event of the proposal: its root, a revision, any patch (hex or hex prefix, "
    "note1, nevent1).")]


@dataclass
class Opts:
    """The options of every ``oa-node git`` command, declared once (see
    :func:`~oa_node.cli_kit.shared_options`); ``init`` has no ``--repo``."""

    config: ConfigOpt = None
    key_file: KeyFileOpt = None
    relay: RelayOpt = None
    dir: DirOpt = Path(".")
    repo: RepoOpt = None
    timeout: TimeoutOption = 10.0
    as_json: JsonOption = False


def _npub(pubkey: str) -> str:
    return nip19.npub_encode(pubkey)


def _short_npub(pubkey: str) -> str:
    n = _npub(pubkey)
    return f"{n[:12]}…{n[-4:]}"


def _parse_pubkey(value: str) -> str:
    return pubkey_arg(value)


def _parse_repo_address(value: str) -> tuple[str, str, list[str]]:
    """naddr1... or ``30617:<pubkey>:<id>`` -> (owner, identifier, relay hints)."""
    value = value.strip()
    if value.startswith("naddr1"):
        try:
            decoded = nip19.decode(value)
        except ProtocolError as exc:
            raise UserError(f"--repo: {exc.reason}") from None
        data = decoded.data
        assert isinstance(data, dict)
        if data["kind"] != nip34.REPO:
            raise UserError(f"--repo: naddr is kind {data['kind']}, not a repository (30617)")
        return str(data["pubkey"]), str(data["identifier"]), list(data["relays"])
    kind, owner, identifier = nip34.parse_coordinate(value)
    if kind != nip34.REPO:
        raise UserError(f"--repo: kind {kind} is not a repository announcement (30617)")
    return owner, identifier, []


# --- the context a command runs in --------------------------------------------------------------


class Context:
    """Opened per command: the git repository, the signer, the node (lazily), relays."""

    def __init__(self, opts: Opts) -> None:
        self.opts = opts
        self.repo = gitops.open_repo(opts.dir)
        self._node: Node | None = None
        self._signer: Signer | None = None

    @property
    def config_path(self) -> Path | None:
        if self.opts.config is not None:
            if not self.opts.config.exists():
                raise UserError(f"{self.opts.config}: config file not found")
            return self.opts.config
        local = Path.cwd() / "node.toml"
        return local if local.exists() else None

    @property
    def node(self) -> Node:
        """The node, for its signer and the capabilities of other plugins."""
        if self._node is None:
            from oa_node.node import build_node

            overrides: dict[str, Any] = {}
            if self.opts.key_file is not None:
                overrides["signer"] = self.signer
            self._node = build_node(self.config_path, **overrides)
        return self._node

    @property
    def signer(self) -> Signer | None:
        if self._signer is None:
            if self.opts.key_file is not None:
                self._signer = LocalSigner.from_file(self.opts.key_file)
            elif self.config_path is not None:
                self._signer = self.node.signer
        return self._signer

    def node_relays(self) -> list[str]:
        """``[node] relays`` when a config is in use (the embedded defaults have none)."""
        if self.config_path is None:
            return []
        return list(self.node.config["node"]["relays"])

    def stored_relays(self) -> list[str]:
        value = gitops.config_get(self.repo, gitops.CONFIG_RELAYS)
        return value.split() if value else []

    def base_relays(self, hints: Sequence[str] = ()) -> list[str]:
        """Relays for finding the announcement: --relay, else stored, hints, node relays."""
        if self.opts.relay:
            return list(dict.fromkeys(self.opts.relay))
        found = [*self.stored_relays(), *hints, *self.node_relays()]
        if not found:
            raise UserError("no relays: pass --relay URL (or set [node] relays in the config)")
        return list(dict.fromkeys(found))

    def remote(self, relays: list[str]) -> tuple[RelayPool, GitAfterRemote]:
        from oa_node.client import ClientError, RelayPool

        try:
            pool = RelayPool(relays, signer=self.signer)
        except ClientError as exc:
            raise UserError(str(exc)) from None
        return pool, GitAfterRemote(pool, self.signer, self.opts.timeout)

    def remember(self, repo: RepoRef, relays: list[str]) -> None:
        addr = nip19.naddr_encode(repo.identifier, repo.owner, nip34.REPO, relays[:3])
        gitops.config_set(self.repo, gitops.CONFIG_REPO, addr)
        gitops.config_set(self.repo, gitops.CONFIG_RELAYS, " ".join(relays))


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one command's relay work; relay-client errors are the user's to fix (a bad URL,
    an unreachable relay), so they print as one line."""
    from oa_node.client import ClientError

    try:
        return anyio.run(fn)
    except ClientError as exc:
        raise UserError(f"relay: {exc}") from None


async def reach(pool: RelayPool, timeout: float) -> None:
    """Connect to every relay first, so a relay that is down is reported as such (with its
    URL), not as an announcement or event "not found" on it: an error when none answers,
    a warning for each one that does not."""
    errors = await pool.connect(timeout)
    failed = [err for err in errors.values() if err]
    if errors and len(failed) == len(errors):
        await pool.close()
        raise UserError("cannot reach any relay: " + "; ".join(failed))
    for err in failed:
        warn("{}", err)


async def load_repo(ctx: Context) -> tuple[RelayPool, GitAfterRemote, RepoRef]:
    """Find the announced repository and open a pool on its relays (or --relay)."""
    stored = gitops.config_get(ctx.repo, gitops.CONFIG_REPO)
    address = ctx.opts.repo or stored
    if address:
        owner, identifier, hints = _parse_repo_address(address)
        pool, remote = ctx.remote(ctx.base_relays(hints))
        await reach(pool, ctx.opts.timeout)
        try:
            repo = await remote.fetch_repo(owner, identifier)
        except BaseException:
            await pool.close()
            raise
    else:
        euc = gitops.earliest_unique_commit(ctx.repo)
        pool, remote = ctx.remote(ctx.base_relays())
        await reach(pool, ctx.opts.timeout)
        try:
            found = await remote.discover(euc)
        except BaseException:
            await pool.close()
            raise
        if not found:
            asked = ", ".join(pool.relays)
            await pool.close()
            raise UserError(f"no repository announcement for this repository (earliest commit "
                            f"{euc[:12]}) on {asked}: run `oa-node git init` to announce it, "
                            "or pass --repo naddr1...")
        if len(found) > 1:
            await pool.close()
            names = ", ".join(
                nip19.naddr_encode(r.identifier, r.owner, nip34.REPO) for r in found)
            raise UserError(f"several announcements share this repository's first commit: "
                            f"pick one with --repo ({names})")
        repo = found[0]
    # NIP-34: talk to the relays the repository lists, plus any the user named.
    from oa_node.client import ClientError

    relays: list[str] = []
    for url in dict.fromkeys([*repo.relays, *pool.relays]):
        try:
            conn = pool.add_relay(url)
        except ClientError:  # the announcement lists a URL that is not a relay: skip it
            continue
        if conn.url not in relays:
            relays.append(conn.url)
    ctx.remember(repo, relays)
    return pool, remote, repo


def with_repo(ctx: Context, fn: Callable[[GitAfterRemote, RepoRef], Awaitable[T]]) -> T:
    async def main() -> T:
        pool, remote, repo = await load_repo(ctx)
        try:
            return await fn(remote, repo)
        finally:
            await pool.close()

    return run(main)


def _short_id(event_id: str) -> str:
    return event_id[:12]


def _status_style(name: str) -> str:
    return {"open": "green", "applied": "magenta", "resolved": "magenta", "closed": "red",
            "draft": "yellow"}.get(name, "white")


def _check_may_set(signer: Signer, root: Event, r: RepoRef, force: bool, what: str) -> None:
    if signer.public_key in r.all_maintainers or signer.public_key == root.pubkey:
        return
    if not force:
        raise UserError(f"you are neither a maintainer of this repository nor the author of "
                        f"this {what}, so readers ignore your status (use --force to publish "
                        "it anyway)")


# --- init / state ------------------------------------------------------------------------------


@app.command()
@shared_options(Opts, exclude=("repo",))
def init(
    identifier: Annotated[str | None, typer.Option(
        "--identifier", "-d", help="The repository id (d tag); default: the folder name.")] = None,
    name: Annotated[str | None, typer.Option(help="Human-readable name.")] = None,
    description: Annotated[str, typer.Option(help="One-line description.")] = "",
    clone: Annotated[list[str] | None, typer.Option(
        "--clone", help="A URL to git-clone from (repeatable).")] = None,
    web: Annotated[list[str] | None, typer.Option(
        "--web", help="A URL to browse the code (repeatable).")] = None,
    maintainer: Annotated[list[str] | None, typer.Option(
        "--maintainer", help="Another maintainer (npub or hex; repeatable).")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="Hashtag.")] = None,
    euc: Annotated[str | None, typer.Option(
        help="Earliest unique commit (default: the root commit).")] = None,
    *, opts: Opts,
) -> None:
    """Announce this repository (30617) and its refs (30618).

    The address and relays are kept in git config (nostr.repo, nostr.relays) for later use."""
    ctx = Context(opts)
    signer = ctx.signer
    if signer is None:
        raise UserError("no key to sign with: pass --key-file PATH, or --config with a node key")
    relays = ctx.base_relays()
    workdir = Path(ctx.repo.working_tree_dir or ctx.repo.git_dir)
    ident = identifier or gitops.slug(workdir.name, 60)
    first = euc or gitops.earliest_unique_commit(ctx.repo)
    if not nip34.is_commit_id(first):
        raise UserError(f"--euc {first!r} is not a commit id")
    repo = RepoRef(
        identifier=ident, owner=signer.public_key, name=name or ident,
        description=description, clone=tuple(clone or ()), web=tuple(web or ()),
        relays=tuple(relays),
        maintainers=tuple(p for p in dict.fromkeys(_parse_pubkey(m) for m in maintainer or [])
                          if p != signer.public_key),
        euc=first, labels=tuple(label or ()))
    refs, head = gitops.refs_state(ctx.repo)

    async def main() -> dict[str, Any]:
        pool, remote = ctx.remote(relays)
        await reach(pool, opts.timeout)
        try:
            # Replaceable events: the newest wins, so never reuse an older timestamp (a
            # re-announcement within the same second would otherwise be a coin toss).
            old = await remote.query({"kinds": [nip34.REPO, nip34.STATE],
                                      "authors": [signer.public_key], "#d": [ident]})
            now = int(time.time())
            ann, ok1 = await remote.sign_and_publish(repo.to_template(
                nip34.next_created_at(now, [e for e in old if e.kind == nip34.REPO])))
            state, ok2 = await remote.sign_and_publish(nip34.state_template(
                ident, refs, head, nip34.next_created_at(
                    now, [e for e in old if e.kind == nip34.STATE])))
        finally:
            await pool.close()
        return {"announcement": ann.id, "state": state.id, "accepted_by": sorted(set(ok1)),
                "state_accepted_by": sorted(set(ok2))}

    out = run(main)
    ctx.remember(repo, relays)
    naddr = nip19.naddr_encode(ident, signer.public_key, nip34.REPO, relays[:3])
    if opts.as_json:
        print_json(out | {"naddr": naddr, "coordinate": repo.coordinate, "euc": first,
                          "relays": relays, "refs": refs, "head": head})
        return
    say("announced [bold]{}[/] ({})", repo.name, repo.coordinate)
    say("  naddr  {}", Text(naddr))  # our own bech32: shown whole, never cut
    say("  euc    {}", first)
    say("  relays {}", ", ".join(out["accepted_by"]))
    say("  state  {} refs, HEAD {}", len(refs), head or "(detached)")


@app.command()
@shared_options(Opts)
def state(
    branch: Annotated[list[str] | None, typer.Option(
        "--branch", "-b", help="A branch to publish (repeatable; remembered for next time; "
        "default: the ones chosen before, else the default branch).")] = None,
    all_branches: Annotated[bool, typer.Option(
        "--all-branches", help="Publish every local branch (review branches pr/... never).")
    ] = False,
    *, opts: Opts,
) -> None:
    """Republish the repository state (30618): the chosen branches, every tag, and HEAD.

    Review branches made by apply and checkout (pr/...) are never published."""
    ctx = Context(opts)
    refs, head = gitops.refs_state(ctx.repo, branch, all_branches=all_branches)
    if branch:
        gitops.config_set(ctx.repo, gitops.CONFIG_STATE_BRANCHES, " ".join(branch))

    async def go(remote: GitAfterRemote, r: RepoRef) -> dict[str, Any]:
        signer = remote.require_signer()
        if signer.public_key not in r.all_maintainers:
            raise UserError("only a maintainer publishes the repository state (the "
                            "announcement lists the owner and its maintainers)")
        previous = await remote.fetch_state(r)
        created_at = nip34.next_created_at(int(time.time()), [previous] if previous else [])
        event, ok = await remote.sign_and_publish(
            nip34.state_template(r.identifier, refs, head, created_at))
        return {"state": event.id, "accepted_by": ok, "refs": refs, "head": head}

    out = with_repo(ctx, go)
    if opts.as_json:
        print_json(out)
    else:
        say("published state {}: {} refs, HEAD {} to {}", _short_id(out["state"]), len(refs),
            head or "(detached)", ", ".join(out["accepted_by"]))


# --- list / show -------------------------------------------------------------------------------


def proposal_json(p: Proposal, comments: list[Event] | None = None) -> dict[str, Any]:
    traj = p.trajectory
    data: dict[str, Any] = {
        "id": p.id, "kind": p.kind, "author": p.author, "author_npub": _npub(p.author),
        "subject": p.subject, "status": p.status.name, "status_kind": p.status.kind,
        "status_event": p.status.event.id if p.status.event else None,
        "status_by": p.status.event.pubkey if p.status.event else None,
        "created_at": p.root.created_at,
        "revision": p.revision.id if p.revision else None,
        "revisions": [e.id for e in p.revisions],
        "trajectory": None if traj is None else {
            "session": traj.session, "relay": traj.relay, "hash": traj.sha256},
    }
    if p.status.kind == nip34.STATUS_APPLIED:
        data["merge_commit"] = p.status.merge_commit
        data["applied_as"] = p.status.applied_as
    if p.pr is not None:
        data["pr"] = {"tip": p.pr.tip, "clone": list(p.pr.clone),
                      "branch_name": p.pr.branch_name, "merge_base": p.pr.merge_base,
                      "updated_by": p.pr.updated_by.id if p.pr.updated_by else None}
    else:
        data["patches"] = [{"id": x.id, "subject": x.subject, "commit": x.commit,
                            "parent_commit": x.parent_commit,
                            "cover_letter": x.is_cover_letter} for x in p.patches]
    if comments is not None:
        data["comments"] = [comment_json(c) for c in comments]
    return data


def comment_json(c: Event) -> dict[str, Any]:
    return {"id": c.id, "author": c.pubkey, "created_at": c.created_at, "content": c.content,
            "parent": nip34.comment_parent(c)}


StatusFilter = Annotated[str, typer.Option(
    "--status", "-s", help="open, applied, closed, draft or all.")]


def _status_filter(value: str, names: dict[int, str]) -> set[str] | None:
    value = value.lower()
    if value == "all":
        return None
    allowed = set(names.values()) | {"applied", "merged", "resolved"}
    if value not in allowed:
        raise UserError(f"--status {value!r}: expected open, applied, closed, draft or all")
    return {"applied", "resolved"} if value in ("applied", "merged", "resolved") else {value}


def print_listing(opts: Opts, payload: dict[str, Any], rows: list[list[Any]], *,
                  empty: str, columns: Sequence[str]) -> None:
    """The output of a ``list`` command (proposals, issues): its JSON payload, one
    ``no ...`` line, or a table with one row per item."""
    if opts.as_json:
        print_json(payload)
    elif not rows:
        say("{}", empty)
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def _print_comments(comments: list[Event]) -> None:
    for c in comments:
        say("\n[bold]{}[/] ({}):", _short_npub(c.pubkey), _short_id(c.id))
        print_text(c.content)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="git")

