"""The one exception type for malformed Nostr input, and NIP-01 machine-readable prefixes.

Relays answer ``OK``/``CLOSED`` with ``"<prefix>: <reason>"``; carrying the prefix on the
exception lets the relay turn any parse failure into a correct reply without guessing.
"""

from __future__ import annotations

import re

PREFIXES: tuple[str, ...] = (
    "invalid",
    "blocked",
    "rate-limited",
    "auth-required",
    "restricted",
    "duplicate",
    "error",
    "pow",
    "mute",
)

# A machine-readable prefix is one lowercase word (NIP-01 also shows "unsupported").
_PREFIX_RE = re.compile(r"([a-z][a-z0-9-]*):(?: |$)")


class ProtocolError(ValueError):
    """Malformed or unacceptable protocol input.

    ``str(exc)`` is ready to send as an ``OK``/``CLOSED`` message.
    """

    prefix: str
    reason: str

    def __init__(self, prefix: str = "invalid", reason: str = "") -> None:
        self.prefix = prefix
        self.reason = reason
        super().__init__(f"{prefix}: {reason}")

    def __str__(self) -> str:
        return f"{self.prefix}: {self.reason}"

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[str, str]]:
        return (type(self), (self.prefix, self.reason))


def prefixed(prefix: str, reason: str) -> str:
    """Format a ``"<prefix>: <reason>"`` message for ``OK``/``CLOSED``."""
    return f"{prefix}: {reason}"


def split_prefix(message: str) -> tuple[str | None, str]:
    """Split ``"prefix: reason"``; returns ``(None, message)`` when there is no prefix."""
    m = _PREFIX_RE.match(message)
    if m is None:
        return None, message
    return m.group(1), message[m.end() :]
