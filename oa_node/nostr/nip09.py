"""NIP-09 deletion requests: which events a kind-5 event may delete (pure rules)."""

from __future__ import annotations

from oa_node.nostr.event import Event
from oa_node.nostr.keys import is_hex
from oa_node.nostr.kinds import DELETION, GIFT_WRAP, is_addressable, is_replaceable


def parse_address(value: str) -> tuple[int, str, str] | None:
    """Split ``kind:pubkey:d`` (d may contain colons); None when malformed."""
    parts = value.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[0].isascii():
        return None
    kind = int(parts[0])
    if not is_hex(parts[1], 32) or kind > 65535:
        return None
    return kind, parts[1], parts[2]


def event_coordinate(event: Event) -> str | None:
    """The ``a``-tag coordinate of a replaceable/addressable event, else None."""
    if is_addressable(event.kind):
        return f"{event.kind}:{event.pubkey}:{event.d_tag}"
    if is_replaceable(event.kind):
        return f"{event.kind}:{event.pubkey}:"
    return None


def deletion_targets(event: Event) -> tuple[set[str], set[str]]:
    """``(event ids from e tags, coordinates from a tags)``; malformed references are skipped.

    Only coordinates with the deletion's own pubkey are returned: nobody can delete another
    author's replaceable events.
    """
    ids: set[str] = set()
    addresses: set[str] = set()
    if event.kind != DELETION:
        return ids, addresses
    for t in event.tags:
        if len(t) < 2:
            continue
        if t[0] == "e" and is_hex(t[1], 32):
            ids.add(t[1])
        elif t[0] == "a":
            parsed = parse_address(t[1])
            if parsed is not None and parsed[1] == event.pubkey:
                kind, pubkey, d = parsed
                addresses.add(f"{kind}:{pubkey}:{'' if is_replaceable(kind) else d}")
    return ids, addresses


def may_delete(deletion_event: Event, target_event: Event) -> bool:
    """True if ``deletion_event`` validly deletes ``target_event``.

    Same author; an ``e`` tag names the id, or an ``a`` tag names the coordinate and the
    target is not newer than the deletion. Deletions cannot be deleted. A gift wrap (1059)
    may also be deleted by a recipient named in its ``p`` tags.
    """
    if deletion_event.kind != DELETION or target_event.kind == DELETION:
        return False
    ids, addresses = deletion_targets(deletion_event)
    if target_event.id in ids:
        if target_event.pubkey == deletion_event.pubkey:
            return True
        if target_event.kind == GIFT_WRAP:
            return deletion_event.pubkey in target_event.tag_values("p")
        return False
    if target_event.pubkey != deletion_event.pubkey:
        return False
    coord = event_coordinate(target_event)
    return (
        coord is not None
        and coord in addresses
        and target_event.created_at <= deletion_event.created_at
    )
