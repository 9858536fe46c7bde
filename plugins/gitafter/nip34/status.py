"""Status events (1630-1633) and who may set them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.gitafter.nip34.common import (
    STATUS_APPLIED,
    STATUS_CLOSED,
    STATUS_KINDS,
    STATUS_NAMES,
    STATUS_OPEN,
    Nip34Error,
    first_value,
    is_commit_id,
    tag_values,
)
from oa_node.plugins.gitafter.nip34.repo import RepoRef

# --- statuses (1630-1633) ---------------------------------------------------------------------


def status_template(
    kind: int,
    root: Event,
    repo: RepoRef,
    *,
    content: str = "",
    revision: Event | None = None,
    merge_commit: str | None = None,
    applied_commits: Sequence[str] = (),
    applied_patches: Sequence[Event] = (),
    relay_hint: str = "",
    created_at: int | None = None,
) -> EventTemplate:
    if kind not in STATUS_KINDS:
        raise Nip34Error(f"kind {kind} is not a status kind ({STATUS_KINDS})")
    tags: list[list[str]] = [["e", root.id, "", "root"]]
    if revision is not None and revision.id != root.id:
        tags.append(["e", revision.id, "", "reply"])
    people = [repo.owner, root.pubkey] + ([revision.pubkey] if revision is not None else [])
    tags.extend(["p", p] for p in dict.fromkeys(people))
    tags.append(["a", repo.coordinate, relay_hint] if relay_hint else ["a", repo.coordinate])
    if repo.euc:
        tags.append(["r", repo.euc])
    if kind == STATUS_APPLIED:
        for p in applied_patches:
            tags.append(["q", p.id, relay_hint, p.pubkey])
        if merge_commit:
            if not is_commit_id(merge_commit):
                raise Nip34Error(f"merge commit {merge_commit!r} is not a commit id")
            tags.append(["merge-commit", merge_commit])
            tags.append(["r", merge_commit])
        if applied_commits:
            bad = [c for c in applied_commits if not is_commit_id(c)]
            if bad:
                raise Nip34Error(f"not commit ids: {', '.join(bad)}")
            tags.append(["applied-as-commits", *applied_commits])
            tags.extend(["r", c] for c in applied_commits)
    return EventTemplate(kind=kind, content=content, tags=tags, created_at=created_at)


@dataclass(frozen=True)
class Status:
    kind: int
    event: Event | None  # None: nobody set one, so the default "open"

    @property
    def name(self) -> str:
        return STATUS_NAMES[self.kind]

    @property
    def merge_commit(self) -> str | None:
        if self.event is None:
            return None
        return (first_value(self.event.tags, "merge-commit")
                or first_value(self.event.tags, "merge-commit-id"))  # ngit's spelling

    @property
    def applied_as(self) -> list[str]:
        return tag_values(self.event.tags, "applied-as-commits") if self.event else []

    def names(self, event_id: str) -> bool:
        """Whether this status event names ``event_id`` (``e`` or ``q`` tag)."""
        if self.event is None:
            return False
        return any(len(t) >= 2 and t[0] in ("e", "q") and t[1] == event_id
                   for t in self.event.tags)


def _targets(status: Event, root_id: str) -> bool:
    """A status is about ``root_id`` when an ``e`` tag marked ``root`` (or unmarked, as some
    clients write) names it."""
    for t in status.tags:
        if len(t) >= 2 and t[0] == "e" and t[1] == root_id:
            marker = t[3] if len(t) >= 4 else ""
            if marker in ("", "root"):
                return True
    return False


def valid_statuses(root: Event, statuses: Iterable[Event],
                   maintainers: Iterable[str]) -> list[Event]:
    """Status events about ``root`` from its author or a maintainer, oldest first."""
    allowed = set(maintainers) | {root.pubkey}
    out = [s for s in statuses
           if s.kind in STATUS_KINDS and s.pubkey in allowed and _targets(s, root.id)]
    return sorted(out, key=lambda e: (e.created_at, e.id))


def resolve_status(root: Event, statuses: Iterable[Event], maintainers: Iterable[str],
                   *, revision: Event | None = None) -> Status:
    """The status that counts: the newest valid one, else open. For a ``revision`` of an
    applied root that the 1631 event does not name, closed (NIP-34)."""
    valid = valid_statuses(root, statuses, maintainers)
    status = Status(valid[-1].kind, valid[-1]) if valid else Status(STATUS_OPEN, None)
    if (revision is not None and revision.id != root.id and status.kind == STATUS_APPLIED
            and not status.names(revision.id)):
        return Status(STATUS_CLOSED, status.event)
    return status


def next_created_at(now: int, existing: Iterable[Event]) -> int:
    """A timestamp later than every event in ``existing``, so a status published right
    after another (in the same second) still wins the "newest" comparison."""
    latest = max((e.created_at for e in existing), default=0)
    return max(now, latest + 1)


