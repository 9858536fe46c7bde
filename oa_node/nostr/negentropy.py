"""Negentropy v1 range-based set reconciliation (NIP-77), sans I/O.

Each side holds records ``(timestamp, 32-byte id)``. The initiator (client) sends
``initiate()``; each side answers the other's message with ``reconcile(msg)``. The
initiator learns which ids it has that the other lacks (``have``) and which the other has
that it lacks (``need``); it is done when ``reconcile`` returns ``None``.

Wire format and choices (16 buckets, an IdList below 32 items, minimal bounds, the
frame-size cut-off) follow the negentropy protocol v1 document so that messages are
byte-identical to the reference implementations. Every message read is hostile: lengths,
bounds, modes and order are checked and a bad one raises :class:`NegentropyError`.
Fingerprints of any range cost O(1) (prefix sums), so the work per message is bounded by the
message's ranges times log(store) plus the ids its IdLists cover.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable

PROTOCOL_VERSION = 0x61
ID_SIZE = 32
MAX_U64 = 2**64 - 1
BUCKETS = 16
_MOD = 2**256
_ZERO_ID = bytes(ID_SIZE)

MODE_SKIP = 0
MODE_FINGERPRINT = 1
MODE_IDLIST = 2


class NegentropyError(ValueError):
    """A message that does not follow the protocol (the session cannot go on)."""


def encode_varint(n: int) -> bytes:
    """Base-128, most significant digit first, high bit set on all but the last byte."""
    if n < 0:
        raise ValueError("negative varint")
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


class _Reader:
    """Cursor over a received message; every read checks the bytes are there."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise NegentropyError("parse ends prematurely")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        n = 0
        for _ in range(10):  # 64 bits need at most 10 digits
            if self.pos >= len(self.data):
                raise NegentropyError("premature end of varint")
            byte = self.data[self.pos]
            self.pos += 1
            n = (n << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return n
        raise NegentropyError("varint too long")


def fingerprint(id_sum: int, count: int) -> bytes:
    """First 16 bytes of sha256(sum of ids mod 2^256, 32-byte LE || varint(count))."""
    return hashlib.sha256((id_sum % _MOD).to_bytes(32, "little") + encode_varint(count)).digest()[
        :16
    ]


def _padded(bound: tuple[int, bytes]) -> tuple[int, bytes]:
    return bound[0], bound[1] + _ZERO_ID[len(bound[1]) :]


class Storage:
    """Sealed, sorted records with prefix sums so any range's fingerprint is O(1)."""

    def __init__(self, items: Iterable[tuple[int, bytes]] = ()) -> None:
        records: list[tuple[int, bytes]] = []
        for ts, rid in items:
            if not isinstance(ts, int) or not 0 <= ts < MAX_U64:
                raise ValueError(f"bad timestamp {ts!r}")
            if not isinstance(rid, bytes) or len(rid) != ID_SIZE:
                raise ValueError("ids must be 32 bytes")
            records.append((ts, rid))
        records.sort()
        # Duplicates would count twice in a fingerprint; a set holds each id once.
        self.items: list[tuple[int, bytes]] = [
            r for i, r in enumerate(records) if i == 0 or records[i - 1] != r
        ]
        sums = [0]
        acc = 0
        for _, rid in self.items:
            acc = (acc + int.from_bytes(rid, "little")) % _MOD
            sums.append(acc)
        self._sums = sums

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self, lo: int, hi: int) -> bytes:
        return fingerprint(self._sums[hi] - self._sums[lo], hi - lo)

    def lower_bound(self, lo: int, hi: int, bound: tuple[int, bytes]) -> int:
        """First index in [lo, hi) whose record is >= bound (bound id zero-padded)."""
        return bisect_left(self.items, _padded(bound), lo, hi)


class Negentropy:
    """One side of a reconciliation over a sealed :class:`Storage`."""

    def __init__(self, storage: Storage, frame_size_limit: int = 0) -> None:
        if frame_size_limit and frame_size_limit < 4096:
            raise ValueError("frame_size_limit too small (minimum 4096)")
        self.storage = storage
        self.frame_size_limit = frame_size_limit
        self.is_initiator = False
        self._last_out = 0
        self._last_in = 0

    # --- public API ------------------------------------------------------------------

    def initiate(self) -> bytes:
        """The client's first message: the whole space split into fingerprints or ids."""
        if self.is_initiator:
            raise NegentropyError("already initiated")
        self.is_initiator = True
        self._last_out = 0
        out = bytearray([PROTOCOL_VERSION])
        out += self._split_range(0, len(self.storage), (MAX_U64, b""))
        return bytes(out)

    def reconcile(self, query: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """Answer ``query``: (next message or None when done, have ids, need ids).

        ``have``/``need`` are only filled on the initiator; a server's answer is never None.
        """
        have: list[bytes] = []
        need: list[bytes] = []
        out = self._reconcile(query, have, need)
        if self.is_initiator and len(out) == 1:
            return None, have, need
        return out, have, need

    # --- encoding --------------------------------------------------------------------

    def _encode_bound(self, bound: tuple[int, bytes]) -> bytes:
        ts, prefix = bound
        if ts == MAX_U64:
            self._last_out = MAX_U64
            enc = encode_varint(0)
        else:
            enc = encode_varint(ts - self._last_out + 1)
            self._last_out = ts
        return enc + encode_varint(len(prefix)) + prefix

    def _decode_bound(self, r: _Reader) -> tuple[int, bytes]:
        ts = r.varint()
        ts = MAX_U64 if ts == 0 else ts - 1
        if self._last_in == MAX_U64 or ts == MAX_U64:
            self._last_in = MAX_U64
            ts = MAX_U64
        else:
            ts += self._last_in
            if ts >= MAX_U64:
                raise NegentropyError("timestamp overflow")
            self._last_in = ts
        n = r.varint()
        if n > ID_SIZE:
            raise NegentropyError("bound key too long")
        return ts, r.take(n)

    def _minimal_bound(self, prev: tuple[int, bytes], curr: tuple[int, bytes]) -> tuple[int, bytes]:
        if curr[0] != prev[0]:
            return curr[0], b""
        shared = 0
        while shared < ID_SIZE and curr[1][shared] == prev[1][shared]:
            shared += 1
        return curr[0], curr[1][: shared + 1]

    def _split_range(self, lo: int, hi: int, upper: tuple[int, bytes]) -> bytes:
        items = self.storage.items
        n = hi - lo
        out = bytearray()
        if n < BUCKETS * 2:
            out += self._encode_bound(upper) + encode_varint(MODE_IDLIST) + encode_varint(n)
            for i in range(lo, hi):
                out += items[i][1]
            return bytes(out)
        per, extra = divmod(n, BUCKETS)
        curr = lo
        for i in range(BUCKETS):
            size = per + (1 if i < extra else 0)
            fp = self.storage.fingerprint(curr, curr + size)
            curr += size
            bound = upper if curr == hi else self._minimal_bound(items[curr - 1], items[curr])
            out += self._encode_bound(bound) + encode_varint(MODE_FINGERPRINT) + fp
        return bytes(out)

    def _exceeded(self, n: int) -> bool:
        return bool(self.frame_size_limit) and n > self.frame_size_limit - 200

    # --- the protocol ----------------------------------------------------------------

    def _reconcile(self, query: bytes, have: list[bytes], need: list[bytes]) -> bytes:
        self._last_in = 0
        self._last_out = 0
        r = _Reader(query)
        full = bytearray([PROTOCOL_VERSION])
        version = r.take(1)[0]
        if not 0x60 <= version <= 0x6F:
            raise NegentropyError("invalid negentropy protocol version byte")
        if version != PROTOCOL_VERSION:
            if self.is_initiator:
                raise NegentropyError("unsupported negentropy protocol version requested")
            return bytes([PROTOCOL_VERSION])

        storage = self.storage
        size = len(storage)
        prev_index = 0
        prev_bound: tuple[int, bytes] = (0, b"")
        skip = False

        while r.more():
            o = bytearray()
            curr_bound = self._decode_bound(r)
            if _padded(curr_bound) < _padded(prev_bound):
                raise NegentropyError("ranges out of order")
            mode = r.varint()
            lower = prev_index
            upper = storage.lower_bound(prev_index, size, curr_bound)

            if mode == MODE_SKIP:
                skip = True
            elif mode == MODE_FINGERPRINT:
                theirs = r.take(16)
                if theirs != storage.fingerprint(lower, upper):
                    if skip:
                        skip = False
                        o += self._encode_bound(prev_bound) + encode_varint(MODE_SKIP)
                    o += self._split_range(lower, upper, curr_bound)
                else:
                    skip = True
            elif mode == MODE_IDLIST:
                count = r.varint()
                if count * ID_SIZE > len(r.data) - r.pos:
                    raise NegentropyError("parse ends prematurely")
                their_ids = {r.take(ID_SIZE) for _ in range(count)}
                for i in range(lower, upper):
                    rid = storage.items[i][1]
                    if rid in their_ids:
                        their_ids.discard(rid)
                    elif self.is_initiator:
                        have.append(rid)
                if self.is_initiator:
                    skip = True
                    need.extend(sorted(their_ids))
                else:
                    if skip:
                        skip = False
                        o += self._encode_bound(prev_bound) + encode_varint(MODE_SKIP)
                    end_bound = curr_bound
                    ids = bytearray()
                    n_ids = 0
                    for i in range(lower, upper):
                        if self._exceeded(len(full) + len(ids)):
                            end_bound = storage.items[i]
                            upper = i  # the rest gets its own fingerprint below
                            break
                        ids += storage.items[i][1]
                        n_ids += 1
                    o += self._encode_bound(end_bound) + encode_varint(MODE_IDLIST)
                    o += encode_varint(n_ids) + ids
                    full += o
                    o = bytearray()
            else:
                raise NegentropyError("unexpected mode")

            if self._exceeded(len(full) + len(o)):
                # Cut the message here: one fingerprint covers everything left.
                full += self._encode_bound((MAX_U64, b"")) + encode_varint(MODE_FINGERPRINT)
                full += storage.fingerprint(upper, size)
                break
            full += o
            prev_index = upper
            prev_bound = curr_bound

        return bytes(full)
