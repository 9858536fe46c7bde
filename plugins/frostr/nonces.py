"""FROSTR nonces: HMAC-derived from pre-shared codes (bifrost 2.x), their wire form, and the
per-peer pools of codes we handed out and nonce commitments we received, journalled so a
nonce is never used twice across restarts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.frost import FrostError, Nonce, Point
from oa_node.plugins.frostr.suite import N
from oa_node.plugins.frostr.wire import _hex, _list, _obj, _point

BINDER_DOMAIN = b"bifrost/nonce/binder/v1"
HIDDEN_DOMAIN = b"bifrost/nonce/hidden/v1"
POOL_SIZE = 100
MIN_THRESHOLD = 20
CRITICAL_THRESHOLD = 5
REPLENISH_COUNT = 50


# --- nonces -----------------------------------------------------------------------------------


def derive_nonce(seckey: bytes, code: bytes) -> Nonce:
    """bifrost's secret nonces for ``code``: HMAC-SHA256 under the share secret."""
    binder = hmac.new(seckey, code + BINDER_DOMAIN, hashlib.sha256).digest()
    hidden = hmac.new(seckey, code + HIDDEN_DOMAIN, hashlib.sha256).digest()
    d, e = int.from_bytes(hidden, "big") % N, int.from_bytes(binder, "big") % N
    if d == 0 or e == 0:  # probability 2^-255; such a code is simply unusable
        raise FrostError("degenerate nonce code")
    return Nonce(hiding=d, binding=e)


@dataclass(frozen=True)
class NonceCommit:
    """A public nonce pair named by its code (``{binder_pn, hidden_pn, code}``)."""

    code: bytes
    binder_pn: Point
    hidden_pn: Point

    @classmethod
    def create(cls, seckey: bytes, code: bytes | None = None) -> NonceCommit:
        code = secrets.token_bytes(32) if code is None else code
        nonce = derive_nonce(seckey, code)
        return cls(code, frost.base_mul(nonce.binding), frost.base_mul(nonce.hiding))

    def to_json(self, idx: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if idx is None else {"idx": idx}
        out.update(binder_pn=frost.ser(self.binder_pn).hex(),
                   hidden_pn=frost.ser(self.hidden_pn).hex(), code=self.code.hex())
        return out

    @classmethod
    def from_json(cls, obj: Any, what: str = "nonce") -> NonceCommit:
        o = _obj(obj, what)
        return cls(_hex(o.get("code"), 32, f"{what}.code"),
                   _point(o.get("binder_pn"), f"{what}.binder_pn"),
                   _point(o.get("hidden_pn"), f"{what}.hidden_pn"))


def parse_nonce_list(value: Any, what: str) -> list[NonceCommit]:
    if value is None:
        return []
    return [NonceCommit.from_json(n, f"{what}[{i}]")
            for i, n in enumerate(_list(value, what, POOL_SIZE))]


class NonceJournal(Protocol):
    """Where :class:`NoncePools` records every change before it takes effect (a file, so a
    restarted holder keeps working with peers that did not restart). Each call returns only
    once the change is durable."""

    def out_add(self, peer: str, codes: list[bytes]) -> None: ...
    def out_confirm(self, peer: str, codes: list[bytes]) -> None: ...
    def out_remove(self, peer: str, codes: list[bytes]) -> None: ...
    def in_add(self, peer: str, nonces: list[NonceCommit], batch: int) -> None: ...
    def in_remove(self, peer: str, codes: list[bytes]) -> None: ...


class NoncePools:
    """Per-peer nonce pools, optionally journalled (bifrost keeps them in memory only).

    *outgoing*: codes this holder generated for a peer. A code is destroyed (journalled
    first) the moment a sign request uses it, before the partial signature exists. Codes
    are *pending* until the peer is known to hold them (its accept of the ping carrying them,
    or the relay's OK for a reply carrying them); only *delivered* ones count, so a ping in
    flight never makes the peer look stocked.
    *incoming*: public nonces a peer generated for this holder, each used at most once
    (removed, journalled, before the session that uses it is sent).
    """

    def __init__(self, seckey: bytes, pool_size: int = POOL_SIZE,
                 journal: NonceJournal | None = None) -> None:
        self._seckey = seckey
        self.pool_size = pool_size
        self.journal = journal
        self._out: dict[str, OrderedDict[bytes, bool]] = {}  # code -> delivered
        self._in: dict[str, OrderedDict[bytes, NonceCommit]] = {}
        #: which arrival (batch) each incoming nonce came in, and of the last one taken
        self._in_batch: dict[bytes, int] = {}
        self._batches = 0
        self.last_taken_batch: dict[str, int] = {}

    def restore(self, outgoing: dict[str, list[tuple[bytes, bool]]],
                incoming: dict[str, list[tuple[NonceCommit, int]]]) -> None:
        """Load journalled pools (oldest first), without journalling them again."""
        for peer, items in outgoing.items():
            self._out.setdefault(peer, OrderedDict()).update(items)
        for peer, pairs in incoming.items():
            self._in.setdefault(peer, OrderedDict()).update((n.code, n) for n, _ in pairs)
            for n, batch in pairs:
                self._in_batch[n.code] = batch
                self._batches = max(self._batches, batch)

    def outgoing_count(self, peer: str) -> int:
        """Codes the peer is known to hold."""
        return sum(self._out.get(peer, {}).values())

    def pending_count(self, peer: str) -> int:
        pool = self._out.get(peer, {})
        return len(pool) - sum(pool.values())

    def pending_codes(self, peer: str) -> list[bytes]:
        return [c for c, delivered in self._out.get(peer, {}).items() if not delivered]

    def incoming_count(self, peer: str) -> int:
        return len(self._in.get(peer, ()))

    def replenish(self, peer: str, count: int = REPLENISH_COUNT) -> list[NonceCommit]:
        """New (pending) nonces for ``peer`` (at most ``pool_size``), journalled before they
        are returned to be sent. A pool holds at most twice ``pool_size`` (room for a batch
        that crossed another): the oldest pending, then the oldest codes make room."""
        pool = self._out.setdefault(peer, OrderedDict())
        count = max(0, min(count, self.pool_size))
        excess = max(0, len(pool) + count - 2 * self.pool_size)
        if excess:  # pending (perhaps never received) codes go first
            old = sorted(pool, key=lambda c: pool[c])[:excess]
            self._out_remove(peer, old)
        fresh = [NonceCommit.create(self._seckey) for _ in range(count)]
        if self.journal is not None and fresh:
            self.journal.out_add(peer, [n.code for n in fresh])
        for n in fresh:
            pool[n.code] = False
        return fresh

    def confirm(self, peer: str, codes: Iterable[bytes]) -> None:
        """The peer now holds these codes (they count from here on)."""
        pool = self._out.get(peer)
        if pool is None:
            return
        known = [c for c in codes if c in pool and not pool[c]]
        if not known:
            return
        if self.journal is not None:
            self.journal.out_confirm(peer, known)
        for c in known:
            pool[c] = True

    def needs_replenish(self, peer: str) -> bool:
        return self.outgoing_count(peer) < MIN_THRESHOLD

    def consume_outgoing(self, peer: str, code: bytes) -> Nonce | None:
        """Destroy ``code`` (durably, first) and return its secret nonce, or None if
        unknown or used."""
        pool = self._out.get(peer)
        if pool is None or code not in pool:
            return None
        self._out_remove(peer, [code])
        return derive_nonce(self._seckey, code)

    def _out_remove(self, peer: str, codes: list[bytes]) -> None:
        if self.journal is not None and codes:
            self.journal.out_remove(peer, codes)
        pool = self._out.get(peer, OrderedDict())
        for c in codes:
            pool.pop(c, None)

    def add_incoming(self, peer: str, nonces: Iterable[NonceCommit]) -> None:
        pool = self._in.setdefault(peer, OrderedDict())
        new = [n for n in dict((n.code, n) for n in nonces).values() if n.code not in pool]
        if not new:
            return
        new = new[-self.pool_size:]
        excess = max(0, len(pool) + len(new) - 2 * self.pool_size)
        if excess:
            self._in_remove(peer, list(pool)[:excess])
        self._batches += 1
        if self.journal is not None:
            self.journal.in_add(peer, new, self._batches)
        for n in new:
            pool[n.code] = n
            self._in_batch[n.code] = self._batches

    def take_incoming(self, peer: str) -> NonceCommit | None:
        """The peer's oldest nonce, removed (durably) before it is returned."""
        pool = self._in.get(peer)
        if not pool:
            return None
        nonce = next(iter(pool.values()))
        self.last_taken_batch[peer] = self._in_batch.get(nonce.code, 0)
        self._in_remove(peer, [nonce.code])
        return nonce

    def drop_batches_through(self, peer: str, batch: int) -> int:
        """Forget the peer's nonces that came in ``batch`` or before (the peer refused one
        of that batch as unknown: it never kept it, or lost it); how many went."""
        old = [c for c in self._in.get(peer, ()) if self._in_batch.get(c, 0) <= batch]
        self._in_remove(peer, old)
        return len(old)

    def drop_incoming(self, peer: str) -> None:
        """Forget every nonce of ``peer`` (it lost its state: they are stale)."""
        self._in_remove(peer, list(self._in.get(peer, ())))

    def _in_remove(self, peer: str, codes: list[bytes]) -> None:
        if self.journal is not None and codes:
            self.journal.in_remove(peer, codes)
        pool = self._in.get(peer, OrderedDict())
        for c in codes:
            pool.pop(c, None)
            self._in_batch.pop(c, None)

    def discard(self, peer: str, codes: Iterable[bytes]) -> None:
        """Destroy codes that never reached ``peer`` (no relay took the message)."""
        pool = self._out.get(peer, {})
        self._out_remove(peer, [c for c in codes if c in pool])

    def forget(self, peer: str) -> None:
        """Destroy every code for ``peer`` and drop its nonces (it lost its state)."""
        self._out_remove(peer, list(self._out.get(peer, ())))
        self.drop_incoming(peer)

