"""What a relay connection reports about itself: its state, its counters, the delay before
its next reconnect and a one-line description of why an attempt failed."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from oa_node.nostr.errors import ProtocolError


class State(enum.Enum):
    IDLE = "idle"  # not started yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # last attempt failed; waiting before the next one
    CLOSED = "closed"


def backoff_delay(attempt: int, initial: float, maximum: float,
                  rng: random.Random | None = None) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): exponential, capped at
    ``maximum``, with "equal jitter" (uniform in the upper half) so many clients that lost the
    same relay do not reconnect in lock-step."""
    base = min(maximum, initial * (2 ** min(attempt, 32)))
    return float(base * (0.5 + 0.5 * (rng or random).random()))


@dataclass
class ConnectionStats:
    """Counters for logs, the CLI and tests."""

    connects: int = 0
    failed_attempts: int = 0
    events_received: int = 0
    invalid_events: int = 0
    unmatched_events: int = 0
    malformed_messages: int = 0
    #: UTF-8 bytes of the text frames sent and received (what a sync reports it moved)
    bytes_sent: int = 0
    bytes_received: int = 0
    notices: list[str] = field(default_factory=list)


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed connection attempt or a lost connection."""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, InvalidHandshake | ProtocolError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is not None:
            return f"closed with code {exc.rcvd.code}" + (f" ({exc.rcvd.reason})"
                                                         if exc.rcvd.reason else "")
        return "no close frame"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
