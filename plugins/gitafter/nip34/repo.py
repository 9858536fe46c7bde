"""Repository announcements (30617), repository state (30618) and NIP-SA trajectory
references carried on patches and PRs."""

from __future__ import annotations

from dataclasses import dataclass

from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex
from oa_node.plugins.gitafter.nip34.common import (
    REPO,
    STATE,
    Nip34Error,
    first_value,
    hashtags,
    is_commit_id,
    short,
    tag_values,
)

# --- repository announcement (30617) and state (30618) ------------------------------------------


@dataclass(frozen=True)
class RepoRef:
    """A repository as its 30617 announcement describes it."""

    identifier: str
    owner: str
    name: str = ""
    description: str = ""
    clone: tuple[str, ...] = ()
    web: tuple[str, ...] = ()
    relays: tuple[str, ...] = ()
    maintainers: tuple[str, ...] = ()  # others besides the owner
    euc: str | None = None
    labels: tuple[str, ...] = ()
    personal_fork: bool = False

    @property
    def coordinate(self) -> str:
        return f"{REPO}:{self.owner}:{self.identifier}"

    @property
    def all_maintainers(self) -> frozenset[str]:
        """Whose statuses count: the owner (unless a personal fork) and listed maintainers."""
        base = set(self.maintainers)
        if not self.personal_fork:
            base.add(self.owner)
        return frozenset(base)

    def to_template(self, created_at: int | None = None) -> EventTemplate:
        tags: list[list[str]] = [["d", self.identifier]]
        if self.name:
            tags.append(["name", self.name])
        if self.description:
            tags.append(["description", self.description])
        if self.web:
            tags.append(["web", *self.web])
        if self.clone:
            tags.append(["clone", *self.clone])
        if self.relays:
            tags.append(["relays", *self.relays])
        if self.euc:
            tags.append(["r", self.euc, "euc"])
        if self.maintainers:
            tags.append(["maintainers", *self.maintainers])
        if self.personal_fork:
            tags.append(["t", "personal-fork"])
        tags.extend(["t", label] for label in self.labels)
        tags.append(["alt", f"git repository: {self.name or self.identifier}"])
        return EventTemplate(kind=REPO, content="", tags=tags, created_at=created_at)

    @classmethod
    def from_event(cls, event: Event) -> RepoRef:
        if event.kind != REPO:
            raise Nip34Error(f"event {short(event.id)} is kind {event.kind}, not a repository "
                             f"announcement ({REPO})")
        identifier = event.d_tag
        if not identifier:
            raise Nip34Error(f"repository announcement {short(event.id)} has no 'd' tag")
        euc = None
        for t in event.tags:
            if len(t) >= 3 and t[0] == "r" and t[2] == "euc" and is_commit_id(t[1]):
                euc = t[1]
                break
        labels = tuple(v for v in tag_values(event.tags, "t") if v != "personal-fork")
        return cls(
            identifier=identifier,
            owner=event.pubkey,
            name=first_value(event.tags, "name") or "",
            description=first_value(event.tags, "description") or "",
            clone=tuple(tag_values(event.tags, "clone")),
            web=tuple(tag_values(event.tags, "web")),
            relays=tuple(tag_values(event.tags, "relays")),
            maintainers=tuple(dict.fromkeys(
                m for m in tag_values(event.tags, "maintainers") if is_hex(m, 32))),
            euc=euc,
            labels=labels,
            personal_fork="personal-fork" in hashtags(event),
        )

    def repo_tags(self, relay_hint: str = "") -> list[list[str]]:
        """The ``a``/``r``/``p`` tags that tie an event to this repository."""
        a = ["a", self.coordinate, relay_hint] if relay_hint else ["a", self.coordinate]
        tags = [a]
        if self.euc:
            tags.append(["r", self.euc])
        tags.append(["p", self.owner])
        return tags


def state_template(identifier: str, refs: dict[str, str], head: str | None,
                   created_at: int | None = None) -> EventTemplate:
    """Kind 30618: one tag per ref (``refs/heads/x``, ``refs/tags/y``) and ``HEAD``."""
    tags: list[list[str]] = [["d", identifier]]
    for ref in sorted(refs):
        if not ref.startswith(("refs/heads/", "refs/tags/")) or not is_commit_id(refs[ref]):
            raise Nip34Error(f"bad ref for a state event: {ref} -> {refs[ref]!r}")
        tags.append([ref, refs[ref]])
    if head:
        tags.append(["HEAD", f"ref: {head}" if not head.startswith("ref: ") else head])
    return EventTemplate(kind=STATE, content="", tags=tags, created_at=created_at)


def parse_state(event: Event) -> tuple[dict[str, str], str | None]:
    if event.kind != STATE:
        raise Nip34Error(f"event {short(event.id)} is not a repository state ({STATE})")
    refs = {t[0]: t[1] for t in event.tags
            if len(t) >= 2 and t[0].startswith("refs/") and is_commit_id(t[1])}
    head = first_value(event.tags, "HEAD")
    return refs, head


# --- trajectories (NIP-SA references on patches and PRs) ---------------------------------------


@dataclass(frozen=True)
class TrajectoryRef:
    session: str
    relay: str = ""
    sha256: str | None = None

    def tags(self) -> list[list[str]]:
        tags = [["trajectory", self.session, self.relay] if self.relay
                else ["trajectory", self.session]]
        if self.sha256:
            tags.append(["trajectory_hash", self.sha256])
        return tags


def parse_trajectory(event: Event) -> TrajectoryRef | None:
    for t in event.tags:
        if len(t) >= 2 and t[0] == "trajectory" and t[1]:
            digest = first_value(event.tags, "trajectory_hash")
            if digest is not None and not is_hex(digest, 32):
                digest = None  # a malformed hash is shown as absent, never trusted
            return TrajectoryRef(t[1], t[2] if len(t) >= 3 else "", digest)
    return None


def check_trajectory_hash(value: str) -> str:
    value = value.strip().lower()
    if not is_hex(value, 32):
        raise Nip34Error(f"trajectory hash must be 64 hex characters (a sha256), got {value!r}")
    return value


