"""NIP-40 expiration timestamps."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oa_node.nostr.event import Event

_DIGITS = re.compile(r"[0-9]{1,19}")


def expiration(event: Event) -> int | None:
    """The first ``expiration`` tag as an int; None when absent or not a plain decimal number."""
    for t in event.tags:
        if len(t) > 1 and t[0] == "expiration":
            value = t[1]
            return int(value) if _DIGITS.fullmatch(value) else None
    return None


def is_expired(event: Event, now: int | None = None) -> bool:
    """True once ``now`` has reached the expiration time (relays then drop/hide the event)."""
    exp = expiration(event)
    if exp is None:
        return False
    if now is None:
        now = int(time.time())
    return now >= exp
