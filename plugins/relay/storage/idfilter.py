"""A Bloom filter over stored event ids, so most new events skip the store probe.

The relay probes the store for an EVENT's id before checking its signature (a repeat is
answered without signature work). On SQLite that probe is a read transaction on the
event loop (two lock calls and a page read: about a third of a signature check), paid
by every new event although it almost always answers "no". This filter answers a
certain "no" in about a microsecond; a "maybe" falls through to the real probe. It is an
optimisation only: the insert still refuses a duplicate, so an id missing from the
filter (stored by another process sharing the file, say) costs one signature check, never
a wrong answer. Event ids are SHA-256 digests, so their leading hex digits are already
uniformly spread: three 24-bit slices are the three bit positions.
"""

from __future__ import annotations

#: 2**24 bits (2 MiB): about 1 false "maybe" in 200 at a million ids, 1 in 40 at two.
BITS = 1 << 24
_MASK = BITS - 1


class IdFilter:
    """Ids added here are "maybe stored"; any other id is certainly not stored here."""

    __slots__ = ("_bits", "ready")

    def __init__(self) -> None:
        self._bits = bytearray(BITS >> 3)
        #: False until the ids already in the store were loaded (until then: "maybe")
        self.ready = False

    def add(self, event_id: str) -> None:
        x = int(event_id[:18], 16)
        b = self._bits
        h = x & _MASK
        b[h >> 3] |= 1 << (h & 7)
        h = (x >> 24) & _MASK
        b[h >> 3] |= 1 << (h & 7)
        h = x >> 48
        b[h >> 3] |= 1 << (h & 7)

    def maybe_contains(self, event_id: str) -> bool:
        if not self.ready:
            return True
        x = int(event_id[:18], 16)
        b = self._bits
        h = x & _MASK
        if not b[h >> 3] & (1 << (h & 7)):
            return False
        h = (x >> 24) & _MASK
        if not b[h >> 3] & (1 << (h & 7)):
            return False
        h = x >> 48
        return bool(b[h >> 3] & (1 << (h & 7)))

    def merge(self, other: IdFilter) -> None:
        """OR ``other``'s bits into this filter and mark it ready."""
        n = len(self._bits)
        merged = int.from_bytes(self._bits, "little") | int.from_bytes(other._bits, "little")
        self._bits[:] = merged.to_bytes(n, "little")
        self.ready = True
