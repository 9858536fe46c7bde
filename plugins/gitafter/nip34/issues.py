"""Issues (1621) and their NIP-22 comments (1111)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.gitafter.nip34.common import (
    COMMENT,
    ISSUE,
    Nip34Error,
    first_value,
    short,
    tag_values,
)
from oa_node.plugins.gitafter.nip34.repo import RepoRef

# --- issues (1621) and comments (NIP-22 1111) ----------------------------------------------------


def issue_template(repo: RepoRef, *, subject: str, content: str,
                   labels: Iterable[str] = (), created_at: int | None = None) -> EventTemplate:
    if not subject.strip():
        raise Nip34Error("an issue needs a subject")
    tags = repo.repo_tags()
    tags.append(["subject", subject.strip()])
    tags.extend(["t", label] for label in labels)
    tags.append(["alt", f"git issue: {subject.strip()}"])
    return EventTemplate(kind=ISSUE, content=content, tags=tags, created_at=created_at)


@dataclass(frozen=True)
class Issue:
    event: Event
    subject: str
    labels: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.event.id


def parse_issue(event: Event) -> Issue:
    if event.kind != ISSUE:
        raise Nip34Error(f"event {short(event.id)} is kind {event.kind}, not an issue ({ISSUE})")
    subject = first_value(event.tags, "subject") or event.content.strip().split("\n", 1)[0][:80]
    return Issue(event, subject, tuple(tag_values(event.tags, "t")))


def comment_template(root: Event, parent: Event, content: str, *, relay_hint: str = "",
                     created_at: int | None = None) -> EventTemplate:
    """A NIP-22 comment: uppercase ``E``/``K``/``P`` for the thread's root, lowercase
    ``e``/``k``/``p`` for the item answered (the root itself for a top-level comment)."""
    if not content.strip():
        raise Nip34Error("a comment needs some text")
    tags = [
        ["E", root.id, relay_hint, root.pubkey],
        ["K", str(root.kind)],
        ["P", root.pubkey],
        ["e", parent.id, relay_hint, parent.pubkey],
        ["k", str(parent.kind)],
        ["p", parent.pubkey],
    ]
    return EventTemplate(kind=COMMENT, content=content, tags=tags, created_at=created_at)


def comments_for(root: Event, events: Iterable[Event]) -> list[Event]:
    """NIP-22 comments in ``root``'s thread in thread order: depth first, siblings oldest
    first, so a reply always follows what it answers (even within the same second).
    Comments whose parent is unknown are treated as top-level."""
    found = {e.id: e for e in events
             if e.kind == COMMENT and root.id in tag_values(e.tags, "E")}
    children: dict[str, list[Event]] = {}
    for e in found.values():
        parent = comment_parent(e)
        key = parent if parent in found and parent != e.id else root.id
        children.setdefault(key, []).append(e)
    out: list[Event] = []
    stack = [root.id]
    seen: set[str] = set()
    while stack:  # bounded: each comment is pushed at most once
        node = stack.pop()
        kids = sorted(children.get(node, []), key=lambda e: (e.created_at, e.id))
        for kid in reversed(kids):
            if kid.id not in seen:
                seen.add(kid.id)
                stack.append(kid.id)
        if node != root.id:
            out.append(found[node])
    # Cycles (a -> b -> a) never reach the root: append them, oldest first.
    out += sorted((e for e in found.values() if e.id not in seen),
                  key=lambda e: (e.created_at, e.id))
    return out


def comment_parent(comment: Event) -> str | None:
    return first_value(comment.tags, "e")
