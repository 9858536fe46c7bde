"""Relay I/O for GitAfter: publish NIP-34 events and read a repository's proposals, issues,
statuses and comments through :class:`oa_node.client.RelayPool`.

Reads are queries that end at EOSE from every relay (or the timeout); every event is
signature-checked by the client. Event ids given by a user may be hex, ``note1``/``nevent1``
or a unique hex prefix of a known root, like git's short ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oa_node.client import RelayPool
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex
from oa_node.plugins.gitafter import nip34
from oa_node.plugins.gitafter.nip34 import Nip34Error, Proposal, RepoRef
from oa_node.signer import Signer

#: Largest events file ``apply --from-file`` reads.
MAX_EVENT_FILE_BYTES = 64 * 1024 * 1024

#: Most events one query asks a relay for (relays cap ``limit``; ours at 1000).
QUERY_LIMIT = 1000
_CHUNK = 100  # ids per filter, to keep REQ messages small


class PublishError(UserError):
    """No relay accepted an event."""


def decode_event_id(value: str) -> str | None:
    """Hex id, ``note1`` or ``nevent1`` -> hex id; None when ``value`` is none of these."""
    value = value.strip()
    if value.startswith("nostr:"):
        value = value[len("nostr:"):]
    if is_hex(value.lower(), 32):
        return value.lower()
    if value.startswith(("note1", "nevent1")):
        try:
            decoded = nip19.decode(value)
        except ProtocolError as exc:
            raise UserError(f"{value[:20]}...: {exc.reason}") from None
        data = decoded.data
        return data if isinstance(data, str) else str(data["id"])
    return None


def pick(value: str, candidates: Sequence[Event], what: str) -> Event:
    """The event ``value`` names among ``candidates`` (full id or unique hex prefix)."""
    full = decode_event_id(value)
    if full is not None:
        for e in candidates:
            if e.id == full:
                return e
        raise UserError(f"no {what} {full[:12]} in this repository (on the relays asked)")
    prefix = value.strip().lower()
    if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
        raise UserError(f"{value!r} is not an event id (hex, note1..., nevent1... or a hex "
                        "prefix of at least 4 characters)")
    found = [e for e in candidates if e.id.startswith(prefix)]
    if not found:
        raise UserError(f"no {what} starting with {prefix} in this repository")
    if len(found) > 1:
        raise UserError(f"{prefix} is ambiguous: {', '.join(e.id[:12] for e in found)}")
    return found[0]


def find_proposal(ident: str, events: Sequence[Event]) -> Event:
    """The proposal root that ``ident`` names: any of its events (the root, a revision
    root, any patch, a PR update) by full id, ``note1``/``nevent1``, or a unique hex prefix
    (of a root first, as git's short ids, then of any event)."""
    roots = nip34.find_roots(events)
    full = decode_event_id(ident)
    if full is None:
        try:
            return pick(ident, roots, "proposal")
        except UserError as exc:
            if "no proposal starting with" not in str(exc):
                raise
        event = pick(ident, events, "proposal")
    else:
        event = next((e for e in events if e.id == full), None)
        if event is None:
            raise UserError(f"no proposal {full[:12]} in this repository (on the relays asked)")
    root = nip34.proposal_root_of(event, events)
    if root is None:
        raise UserError(f"event {event.id[:12]} belongs to no proposal found on the relays "
                        "asked (its root patch or pull request is missing)")
    return root


def _chunks(items: Sequence[str], n: int = _CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass
class IssueView:
    issue: nip34.Issue
    status: nip34.Status
    comments: list[Event]


class GitAfterRemote:
    """One repository's events on its relays, with the user's signer for writing."""

    def __init__(self, pool: RelayPool, signer: Signer | None, timeout: float = 10.0) -> None:
        self.pool = pool
        self.signer = signer
        self.timeout = timeout

    # --- writing ------------------------------------------------------------------------------

    def require_signer(self) -> Signer:
        if self.signer is None:
            raise UserError("no key to sign with: pass --key-file PATH, or --config with a "
                            "node key")
        return self.signer

    async def sign(self, template: EventTemplate) -> Event:
        return await self.require_signer().sign(template)

    async def publish(self, event: Event) -> list[str]:
        """Send ``event`` to every relay; the relays that accepted it. Raises when none did."""
        result = await self.pool.publish(event, self.timeout)
        if not result.ok:
            detail = "; ".join(f"{url}: {msg}" for url, msg in result.rejected.items())
            raise PublishError(f"no relay accepted event {event.id[:12]} (kind {event.kind}): "
                               f"{detail or 'no relays configured'}")
        return result.accepted_by

    async def sign_and_publish(self, template: EventTemplate) -> tuple[Event, list[str]]:
        event = await self.sign(template)
        return event, await self.publish(event)

    # --- repository ---------------------------------------------------------------------------

    async def query(self, filters: Any) -> list[Event]:
        return await self.pool.query(filters, self.timeout)

    async def fetch_repo(self, owner: str, identifier: str) -> RepoRef:
        events = await self.query({"kinds": [nip34.REPO], "authors": [owner],
                                   "#d": [identifier]})
        newest = max(events, key=lambda e: (e.created_at, e.id), default=None)
        if newest is None:
            raise UserError(f"repository announcement 30617:{owner[:12]}...:{identifier} not "
                            f"found on {', '.join(self.pool.relays) or 'any relay'}")
        return RepoRef.from_event(newest)

    async def discover(self, euc: str) -> list[RepoRef]:
        """Announcements whose earliest unique commit is ``euc`` (one per owner+id)."""
        events = await self.query({"kinds": [nip34.REPO], "#r": [euc]})
        refs: dict[tuple[str, str], tuple[Event, RepoRef]] = {}
        for e in events:
            try:
                ref = RepoRef.from_event(e)
            except Nip34Error:
                continue
            if ref.euc != euc:
                continue
            key = (ref.owner, ref.identifier)
            if key not in refs or refs[key][0].created_at < e.created_at:
                refs[key] = (e, ref)
        return [r for _, r in refs.values()]

    async def fetch_state(self, repo: RepoRef) -> Event | None:
        events = await self.query({"kinds": [nip34.STATE], "authors": [repo.owner],
                                   "#d": [repo.identifier]})
        return max(events, key=lambda e: (e.created_at, e.id), default=None)

    # --- proposals ----------------------------------------------------------------------------

    async def proposal_events(self, repo: RepoRef) -> list[Event]:
        return await self.query({
            "kinds": [nip34.PATCH, nip34.PULL_REQUEST, nip34.PULL_REQUEST_UPDATE],
            "#a": [repo.coordinate], "limit": QUERY_LIMIT})

    async def statuses(self, ids: Sequence[str]) -> list[Event]:
        out: list[Event] = []
        for chunk in _chunks(list(ids)):
            out += await self.query({"kinds": list(nip34.STATUS_KINDS), "#e": list(chunk),
                                     "limit": QUERY_LIMIT})
        return out

    async def proposals(self, repo: RepoRef) -> tuple[list[Proposal], list[str]]:
        """Every proposal with its status, newest first, and warnings for ones that could
        not be read (a malformed patch makes that proposal unreadable, not the list)."""
        events = await self.proposal_events(repo)
        roots = nip34.find_roots(events)
        statuses = await self.statuses([r.id for r in roots]) if roots else []
        out: list[Proposal] = []
        warnings: list[str] = []
        for root in roots:
            try:
                out.append(nip34.build_proposal(root, events, repo.all_maintainers, statuses))
            except Nip34Error as exc:
                warnings.append(str(exc))
        return out, warnings

    async def proposal(self, repo: RepoRef, ident: str, *,
                       revision: str | None = None) -> tuple[Proposal, list[Event]]:
        """One proposal (built strictly: a malformed patch is an error) and its statuses."""
        events = await self.proposal_events(repo)
        root = find_proposal(ident, events)
        statuses = await self.statuses([root.id])
        return nip34.build_proposal(root, events, repo.all_maintainers, statuses,
                                    revision=revision), statuses

    # --- issues and comments ------------------------------------------------------------------

    async def issues(self, repo: RepoRef) -> list[tuple[nip34.Issue, nip34.Status]]:
        events = await self.query({"kinds": [nip34.ISSUE], "#a": [repo.coordinate],
                                   "limit": QUERY_LIMIT})
        events.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        statuses = await self.statuses([e.id for e in events]) if events else []
        return [(nip34.parse_issue(e),
                 nip34.resolve_status(e, statuses, repo.all_maintainers)) for e in events]

    async def issue(self, repo: RepoRef, ident: str) -> tuple[IssueView, list[Event]]:
        events = await self.query({"kinds": [nip34.ISSUE], "#a": [repo.coordinate],
                                   "limit": QUERY_LIMIT})
        event = pick(ident, events, "issue")
        statuses = await self.statuses([event.id])
        view = IssueView(nip34.parse_issue(event),
                         nip34.resolve_status(event, statuses, repo.all_maintainers),
                         await self.comments(event))
        return view, statuses

    async def comments(self, root: Event) -> list[Event]:
        events = await self.query({"kinds": [nip34.COMMENT], "#E": [root.id],
                                   "limit": QUERY_LIMIT})
        return nip34.comments_for(root, events)

    async def thread_root(self, repo: RepoRef, ident: str) -> Event:
        """An issue or proposal root by id or prefix (for comments)."""
        events = await self.query({"kinds": [nip34.ISSUE, nip34.PATCH, nip34.PULL_REQUEST],
                                   "#a": [repo.coordinate], "limit": QUERY_LIMIT})
        roots = [e for e in events if e.kind == nip34.ISSUE or nip34.is_proposal_root(e)]
        return pick(ident, roots, "issue or proposal")

    # --- statuses -----------------------------------------------------------------------------

    async def set_status(self, kind: int, root: Event, repo: RepoRef, existing: list[Event],
                         **kwargs: Any) -> tuple[Event, list[str]]:
        created_at = nip34.next_created_at(int(time.time()), existing)
        template = nip34.status_template(kind, root, repo, created_at=created_at, **kwargs)
        return await self.sign_and_publish(template)


# --- offline: events from a file -----------------------------------------------------------


def read_event_file(path: Path) -> list[Event]:
    """Events from ``path``: a JSON array, or JSON lines (one event per line, as ``nak`` and
    relay dumps write them). Each is checked like one from a relay (strict NIP-01 shape, id
    and signature); the first bad one is an error naming its place in the file."""
    try:
        size = path.stat().st_size
        if size > MAX_EVENT_FILE_BYTES:
            raise UserError(f"{path}: {size} bytes, over the {MAX_EVENT_FILE_BYTES}-byte limit "
                            "for an events file")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text (expected JSON events)") from None
    try:
        if text.lstrip().startswith("["):
            items = json.loads(text)
            places = [f"event {i + 1}" for i in range(len(items))]
        else:
            lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
            items = [json.loads(ln) for _, ln in lines]
            places = [f"line {n}" for n, _ in lines]
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: not a JSON array or JSON lines of events: {exc}") from None
    events: list[Event] = []
    for place, obj in zip(places, items, strict=True):
        try:
            event = Event.from_dict(obj)
        except ProtocolError as exc:
            raise UserError(f"{path}: {place}: not a Nostr event ({exc.reason})") from None
        if not event.verify():
            raise UserError(f"{path}: {place}: event {event.id[:12]} has a wrong id or "
                            "signature")
        events.append(event)
    return events


def offline_proposal(events: Sequence[Event], ident: str | None, *,
                     revision: str | None = None,
                     maintainers: Iterable[str] = ()) -> Proposal:
    """The proposal ``ident`` names among ``events`` (the only one when None), built as
    from relays. Whose revisions and statuses count: the newest announcement (30617) in the
    events, else ``maintainers``, besides the root's author."""
    announcements = [e for e in events if e.kind == nip34.REPO]
    maint = set(maintainers)
    if announcements:
        newest = max(announcements, key=lambda e: (e.created_at, e.id))
        maint = set(RepoRef.from_event(newest).all_maintainers)
    found = [e for e in events if e.kind in (nip34.PATCH, nip34.PULL_REQUEST,
                                             nip34.PULL_REQUEST_UPDATE)]
    if ident is None:
        roots = nip34.find_roots(found)
        if len(roots) != 1:
            raise UserError(f"the events hold {len(roots)} proposals: name one "
                            f"({', '.join(r.id[:12] for r in roots) or 'none'})")
        root = roots[0]
    else:
        root = find_proposal(ident, found)
    statuses = [e for e in events if e.kind in nip34.STATUS_KINDS]
    return nip34.build_proposal(root, found, maint, statuses, revision=revision)
