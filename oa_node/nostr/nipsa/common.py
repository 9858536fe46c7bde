"""NIP-SA pieces every event family shares: the ``d`` values, the enumerations, the
content form (canonical JSON) and the tag readers."""

from __future__ import annotations

import json
from typing import Any

from oa_node.canonical import CanonicalJSONError, canonical_json
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.keys import is_hex

PROFILE_D = "profile"
STATE_D = "state"
SCHEDULE_D = "schedule"
GOALS_D = "goals"

AUTONOMY_LEVELS = ("supervised", "bounded", "autonomous")
#: What can wake an agent: its heartbeat, a manual ``oa-node agent tick``, or a trigger.
TICK_TRIGGERS = ("heartbeat", "manual", "mention", "dm", "zap", "kind")
TICK_STATUSES = ("success", "failure", "timeout")
#: The documented payload types of a trajectory event (39231 ``step`` / content ``type``).
TRAJECTORY_EVENT_TYPES = frozenset(
    {
        "user",
        "agent",
        "tool",
        "tool_start",
        "tool_progress",
        "observation",
        "thinking",
        "subagent",
        "question",
        "todos",
        "phase",
        "session_end",
    }
)
SESSION_END = "session_end"

_MAX_ID_LEN = 128
#: Most missing ``seq`` numbers a report lists: a hostile ``seq`` or ``total_events`` of
#: 10**12 must cost a reader a short list, not a set of that size.
MAX_LISTED_MISSING = 1000
def content_json(obj: Any) -> str:
    """The canonical JSON (:func:`oa_node.canonical.canonical_json`) of an event's content;
    integers beyond 2**53 are refused rather than rounded, so every reader gets the value
    that was written."""
    try:
        return canonical_json(obj, exact_integers=True)
    except CanonicalJSONError as exc:
        raise ProtocolError("invalid", f"not JSON-serialisable: {exc}") from None


def json_object(text: str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(text) if text else {}
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid", f"{what}: content is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("invalid", f"{what}: content must be a JSON object")
    return obj


def expect_kind(event: Event, kind: int, what: str) -> None:
    if event.kind != kind:
        raise ProtocolError("invalid", f"{what}: expected kind {kind}, got {event.kind}")


def int_tag(event: Event, name: str, what: str, *, default: int | None = None) -> int | None:
    raw = event.first_tag_value(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError("invalid", f"{what}: tag {name!r} must be an integer") from None
    if value < 0:
        raise ProtocolError("invalid", f"{what}: tag {name!r} must not be negative")
    return value


def check_identifier(value: str, what: str) -> str:
    if not value or len(value) > _MAX_ID_LEN or any(c.isspace() or c == ":" for c in value):
        raise ProtocolError(
            "invalid", f"{what}: must be 1-{_MAX_ID_LEN} characters without spaces or ':'"
        )
    return value


def check_pubkey(value: str, what: str) -> str:
    if not is_hex(value, 32):
        raise ProtocolError("invalid", f"{what}: expected a 64-hex public key")
    return value


def neg_id(event_id: str) -> bytes:
    """Sort key that orders equal timestamps by the lowest id first (NIP-01's tie rule)."""
    return bytes(255 - b for b in bytes.fromhex(event_id))
