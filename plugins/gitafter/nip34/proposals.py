"""Proposals: a root (patch series or PR), its revisions and its resolved status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from oa_node.nostr.event import Event
from oa_node.plugins.gitafter.nip34.common import (
    PATCH,
    PULL_REQUEST,
    PULL_REQUEST_UPDATE,
    REVISION_MARKERS,
    Nip34Error,
    _pr_revision_of,
    first_value,
    hashtags,
    marked_e,
    short,
    tag_values,
)
from oa_node.plugins.gitafter.nip34.patches import (
    PatchEvent,
    is_proposal_root,
    parse_patch,
    series,
    strip_patch_prefix,
)
from oa_node.plugins.gitafter.nip34.pulls import PullRequest, apply_updates, parse_pr
from oa_node.plugins.gitafter.nip34.repo import TrajectoryRef, parse_trajectory
from oa_node.plugins.gitafter.nip34.status import Status, resolve_status

# --- proposals: a root, its revisions and its status --------------------------------------------


@dataclass
class Proposal:
    """A patch series or pull request with its current revision and status."""

    root: Event
    status: Status
    patches: list[PatchEvent] = field(default_factory=list)  # current revision, in order
    revision: Event | None = None  # the current revision's first event (None: the root)
    revisions: list[Event] = field(default_factory=list)  # all revision roots, oldest first
    pr: PullRequest | None = None  # set when the current revision is a pull request

    @property
    def id(self) -> str:
        return self.root.id

    @property
    def kind(self) -> str:
        return "pr" if self.pr is not None else "patch"

    @property
    def author(self) -> str:
        return self.root.pubkey

    @property
    def subject(self) -> str:
        if self.root.kind == PULL_REQUEST:
            return first_value(self.root.tags, "subject") or ""
        first = self.patches[0] if self.patches else parse_patch(self.root)
        return strip_patch_prefix(first.subject)

    @property
    def commit_patches(self) -> list[PatchEvent]:
        return [p for p in self.patches if not p.is_cover_letter]

    @property
    def trajectory(self) -> TrajectoryRef | None:
        if self.pr is not None and self.pr.trajectory is not None:
            return self.pr.trajectory
        for p in self.patches:
            if p.trajectory is not None:
                return p.trajectory
        return parse_trajectory(self.root)


def build_proposal(root: Event, events: Iterable[Event], maintainers: Iterable[str],
                   statuses: Iterable[Event] = (), *, revision: str | None = None) -> Proposal:
    """Assemble a proposal from ``events`` (patches, PRs, PR updates of the repo). Only
    revisions by the root's author or a maintainer are considered, so nobody else can swap
    the code a maintainer applies. The current revision is the newest, or ``revision``:
    ``1`` the original, ``2`` the first revision..., or a revision root's id (or prefix)."""
    maint = set(maintainers)
    allowed = maint | {root.pubkey}
    evs = list(events)
    revisions = sorted(
        (e for e in evs if e.pubkey in allowed and e.id != root.id and (
            (e.kind == PATCH and any(m in hashtags(e) for m in REVISION_MARKERS)
             and marked_e(e, "reply") == root.id)
            or (e.kind == PULL_REQUEST and _pr_revision_of(e) == root.id))),
        key=lambda e: (e.created_at, e.id))
    current = revisions[-1] if revisions else root
    if revision is not None:
        current = _pick_revision(root, revisions, revision)
    status = resolve_status(root, statuses, maint)
    prop = Proposal(root=root, status=status,
                    revision=current if current.id != root.id else None,
                    revisions=revisions)
    if current.kind == PULL_REQUEST:
        pr = parse_pr(current)
        prop.pr = apply_updates(pr, (e for e in evs if e.kind == PULL_REQUEST_UPDATE), maint)
    else:
        # Only the series author's own patches continue it: anyone can publish a patch that
        # replies into someone's series, and the newest child would otherwise win.
        chain = series(current, (e for e in evs
                                 if e.kind == PATCH and e.pubkey == current.pubkey))
        total = len(chain)
        prop.patches = [parse_patch(e, f"{i + 1}/{total}") for i, e in enumerate(chain)]
    return prop


def proposal_root_of(event: Event, events: Iterable[Event]) -> Event | None:
    """The proposal root an event belongs to: itself for a root; the original for a
    revision root (its ``e ... reply``) or a PR revising a patch set; the series' first
    patch (then its original, if that is a revision) for any later patch; the PR for a PR
    update (``E``). None when the chain leads to no root among ``events``."""
    by_id = {e.id: e for e in events}
    current: Event | None = event
    for _ in range(4):  # patch -> revision root -> original root; bounded
        if current is None:
            return None
        if is_proposal_root(current):
            return current
        nxt: str | None = None
        if current.kind == PATCH:
            marks = hashtags(current)
            if "root" in marks and any(r in marks for r in REVISION_MARKERS):
                nxt = marked_e(current, "reply")
            else:
                nxt = marked_e(current, "root")
        elif current.kind == PULL_REQUEST:
            nxt = _pr_revision_of(current)
        elif current.kind == PULL_REQUEST_UPDATE:
            nxt = next(iter(tag_values(current.tags, "E")), None)
        current = by_id.get(nxt) if nxt else None
    return None


def _pick_revision(root: Event, revisions: list[Event], wanted: str) -> Event:
    every = [root, *revisions]
    value = wanted.strip().lower()
    if value.isdigit() and len(value) < 6:
        n = int(value)
        if not 1 <= n <= len(every):
            raise Nip34Error(f"proposal {short(root.id)} has {len(every)} revision(s): "
                             f"--revision {wanted} is not one of 1..{len(every)}")
        return every[n - 1]
    found = [e for e in every if e.id.startswith(value)] if len(value) >= 4 else []
    if len(found) != 1:
        names = ", ".join(f"{i + 1}={short(e.id)}" for i, e in enumerate(every))
        raise Nip34Error(f"--revision {wanted[:70]!r} names no single revision of proposal "
                         f"{short(root.id)} ({names})")
    return found[0]


def find_roots(events: Iterable[Event]) -> list[Event]:
    """Proposal roots among ``events``, newest first."""
    return sorted((e for e in events if is_proposal_root(e)),
                  key=lambda e: (e.created_at, e.id), reverse=True)


