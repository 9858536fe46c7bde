"""NIP-40 expiration timestamps.

Works on anything with NIP-01 ``tags`` (an :class:`~oa_node.nostr.event.Event`, a
template), so this module imports nothing of ``event`` (which imports it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Protocol


class Tagged(Protocol):
    @property
    def tags(self) -> Sequence[Sequence[str]]: ...


_DIGITS = re.compile(r"[0-9]{1,19}")


def expiration(event: Tagged) -> int | None:
    """The first ``expiration`` tag as an int; None when absent or not a plain decimal number."""
    for t in event.tags:
        if len(t) > 1 and t[0] == "expiration":
            value = t[1]
            return int(value) if _DIGITS.fullmatch(value) else None
    return None


def is_expired(event: Tagged, now: int | None = None) -> bool:
    """True once ``now`` has reached the expiration time (relays then drop/hide the event)."""
    exp = expiration(event)
    if exp is None:
        return False
    if now is None:
        now = int(time.time())
    return now >= exp
