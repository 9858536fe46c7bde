"""The FROSTR coordination protocol (bifrost 2.x wire format), without I/O.

Message shapes, ids and nonce handling as @frostr/bifrost 2.0.2 speaks them (a recorded
sign request is in ``tests/vectors/frostr-bifrost/wire-sign-request.json``):
RPC envelopes (NIP-44 plaintexts of kind-20000 events), sign sessions with ``gid``/``sid``,
HMAC-derived nonces from pre-shared codes, ping and ECDH payloads. Every parser validates
its input fully and raises :class:`WireError` with a reason, so a malformed peer message
becomes a ``reject`` envelope (or is dropped) and never an exception elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from oa_node.nostr import nip44
from oa_node.nostr.errors import ProtocolError
from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.encoding import GroupPackage
from oa_node.plugins.frostr.frost import FrostError, Nonce, Point
from oa_node.plugins.frostr.suite import N

RPC_KIND = 20000
RPC_VERSION = 1
PING_VERSION = 2
BINDER_DOMAIN = b"bifrost/nonce/binder/v1"
HIDDEN_DOMAIN = b"bifrost/nonce/hidden/v1"
POOL_SIZE = 100
MIN_THRESHOLD = 20
CRITICAL_THRESHOLD = 5
REPLENISH_COUNT = 50
MAX_HASHES = 1  # one sighash per session: a nonce must never sign two messages
MAX_CONTENT_BYTES = 64 * 1024


class WireError(ValueError):
    """A malformed or unacceptable protocol message."""


# --- small validators -------------------------------------------------------------------------


def _hex(value: Any, nbytes: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * nbytes:
        raise WireError(f"{what}: expected {2 * nbytes} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise WireError(f"{what}: not hex") from None


def _point(value: Any, what: str) -> Point:
    raw = _hex(value, 33, what)
    try:
        return frost.point_from_bytes(raw)
    except FrostError as exc:
        raise WireError(f"{what}: {exc}") from None


def _int(value: Any, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise WireError(f"{what}: expected an integer {lo}..{hi}")
    return value


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{what}: expected a JSON object")
    return value


def _list(value: Any, what: str, max_len: int = 1000) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_len:
        raise WireError(f"{what}: expected a list of at most {max_len} items")
    return value


def _members(o: dict[str, Any], what: str) -> list[int]:
    """``o["members"]``: distinct member indexes (1 and up), at least one."""
    members = [_int(m, f"{what}.members[]", 1) for m in _list(o.get("members"), "members")]
    if len(set(members)) != len(members) or not members:
        raise WireError(f"{what}.members: expected distinct member indexes")
    return members


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise WireError(f"{what}: expected a JSON string")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise WireError(f"{what}: invalid JSON") from None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


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


# --- content encryption ---------------------------------------------------------------------

_TO_URL = str.maketrans("+/", "-_")
_FROM_URL = str.maketrans("-_", "+/")


def encrypt_content(plaintext: str, conversation_key: bytes, nonce: bytes | None = None) -> str:
    """NIP-44 v2, written as bifrost writes it: base64url without padding (the vectors show
    this; standard NIP-44 uses padded standard base64, which :func:`decrypt_content` takes
    as well)."""
    return nip44.encrypt(plaintext, conversation_key, nonce).translate(_TO_URL).rstrip("=")


def decrypt_content(payload: str, conversation_key: bytes) -> str:
    """Decrypt NIP-44 v2 in either base64 alphabet. Raises WireError."""
    if not isinstance(payload, str) or len(payload) > 2 * 1024 * 1024:
        raise WireError("content: expected a NIP-44 payload")
    std = payload.translate(_FROM_URL)
    std += "=" * (-len(std) % 4)
    try:
        return nip44.decrypt(std, conversation_key)
    except ProtocolError as exc:
        raise WireError(f"content: {exc.reason}") from None


# --- RPC envelopes ----------------------------------------------------------------------------


def new_request_id() -> str:
    """43-character base64url of 32 random bytes, as bifrost makes them."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@dataclass
class Envelope:
    type: str  # "request" | "accept" | "reject"
    id: str
    method: str | None = None
    params: list[str] = field(default_factory=list)
    data: Any = None
    reason: str | None = None

    def to_json(self) -> str:
        if self.type == "request":
            return dumps({"id": self.id, "method": self.method, "params": self.params,
                          "peers": [], "type": "request", "version": RPC_VERSION})
        if self.type == "accept":
            return dumps({"id": self.id, "data": self.data, "status": True, "type": "accept",
                          "version": RPC_VERSION})
        return dumps({"id": self.id, "reason": self.reason or "", "status": False,
                      "type": "reject", "version": RPC_VERSION})


def request(method: str, params: Any, request_id: str | None = None) -> Envelope:
    """A request whose ``params[0]`` is ``params`` as a JSON string (or the string itself)."""
    p = params if isinstance(params, str) else dumps(params)
    return Envelope("request", request_id or new_request_id(), method=method, params=[p])


def accept(request_id: str, data: Any) -> Envelope:
    return Envelope("accept", request_id, data=data)


def reject(request_id: str, reason: str) -> Envelope:
    return Envelope("reject", request_id, reason=reason)


def parse_envelope(text: str) -> Envelope:
    obj = _obj(_json(text, "envelope"), "envelope")
    rid = obj.get("id")
    if not isinstance(rid, str) or not 1 <= len(rid) <= 128:
        raise WireError("envelope.id: expected a string of 1..128 characters")
    kind = obj.get("type")
    if kind == "request":
        method = obj.get("method")
        if not isinstance(method, str) or not method:
            raise WireError("envelope.method: expected a string")
        params = _list(obj.get("params", []), "envelope.params", 16)
        if not all(isinstance(p, str) for p in params):
            raise WireError("envelope.params: expected strings")
        return Envelope("request", rid, method=method, params=params)
    if kind == "accept":
        return Envelope("accept", rid, data=obj.get("data"))
    if kind == "reject":
        reason = obj.get("reason", "")
        return Envelope("reject", rid, reason=reason if isinstance(reason, str) else str(reason))
    raise WireError(f"envelope.type: unknown {kind!r}")


# --- sign sessions ----------------------------------------------------------------------------


def session_member_order(idxs: Iterable[int]) -> list[int]:
    """bifrost sorts members with JS ``Array.sort()``: as strings (``[1, 10, 2]``)."""
    return sorted(set(idxs), key=str)


@dataclass(frozen=True)
class SessionNonce:
    idx: int
    commit: NonceCommit

    def to_json(self) -> dict[str, Any]:
        return self.commit.to_json(self.idx)


@dataclass(frozen=True)
class SignSession:
    """A ``sign`` request's session package."""

    gid: bytes
    sid: bytes
    members: list[int]
    hashes: list[list[str]]
    content: str | None
    type: str
    stamp: int
    nonces: list[SessionNonce]

    @staticmethod
    def compute_sid(gid: bytes, members: list[int], hashes: list[list[str]], content: str | None,
                    type_: str, stamp: int) -> bytes:
        h = hashlib.sha256(gid)
        for m in members:
            h.update(m.to_bytes(4, "big"))
        for vec in hashes:
            for item in vec:
                h.update(bytes.fromhex(item))
        h.update(bytes.fromhex(content) if content is not None else b"\x00")
        h.update(type_.encode())
        h.update(stamp.to_bytes(4, "big"))
        return h.digest()

    @classmethod
    def build(cls, group: GroupPackage, members: Iterable[int], sighash: bytes, stamp: int,
              nonces: dict[int, NonceCommit], content: bytes | None = None) -> SignSession:
        order = session_member_order(members)
        if set(order) != set(nonces):
            raise WireError("one nonce per member is needed")
        hashes = [[sighash.hex()]]
        content_hex = content.hex() if content is not None else None
        sid = cls.compute_sid(group.gid, order, hashes, content_hex, "message", stamp)
        return cls(group.gid, sid, order, hashes, content_hex, "message", stamp,
                   [SessionNonce(i, nonces[i]) for i in order])

    def to_json(self) -> dict[str, Any]:
        return {"gid": self.gid.hex(), "sid": self.sid.hex(), "members": self.members,
                "hashes": self.hashes, "content": self.content, "type": self.type,
                "stamp": self.stamp, "nonces": [n.to_json() for n in self.nonces]}

    @classmethod
    def from_json(cls, obj: Any) -> SignSession:
        o = _obj(obj, "session")
        members = _members(o, "session")
        hashes = []
        for vec in _list(o.get("hashes"), "session.hashes", 100):
            items = _list(vec, "session.hashes[]", 16)
            if not items:
                raise WireError("session.hashes[]: empty")
            for item in items:
                _hex(item, 32, "session.hashes[][]")
            hashes.append(items)
        if not hashes:
            raise WireError("session.hashes: nothing to sign")
        content = o.get("content")
        if content is not None:
            if not isinstance(content, str) or len(content) > 2 * MAX_CONTENT_BYTES:
                raise WireError("session.content: expected null or a hex string")
            try:
                bytes.fromhex(content)
            except ValueError:
                raise WireError("session.content: not hex") from None
        type_ = o.get("type")
        if not isinstance(type_, str) or len(type_) > 64:
            raise WireError("session.type: expected a string")
        nonces = []
        for i, n in enumerate(_list(o.get("nonces"), "session.nonces")):
            idx = _int(_obj(n, "session.nonces[]").get("idx"), "session.nonces[].idx", 1)
            nonces.append(SessionNonce(idx, NonceCommit.from_json(n, f"session.nonces[{i}]")))
        if sorted(n.idx for n in nonces) != sorted(members):
            raise WireError("session.nonces: expected one nonce per member")
        return cls(_hex(o.get("gid"), 32, "session.gid"), _hex(o.get("sid"), 32, "session.sid"),
                   members, hashes, content, type_, _int(o.get("stamp"), "session.stamp"), nonces)

    def check_ids(self, group: GroupPackage) -> None:
        """Stricter than bifrost: the session is for this group and its sid is honest."""
        if self.gid != group.gid:
            raise WireError("session is for another group (gid mismatch)")
        want = self.compute_sid(self.gid, self.members, self.hashes, self.content, self.type,
                                self.stamp)
        if want != self.sid:
            raise WireError("session id does not match its contents")

    def commitments(self) -> list[frost.Commitment]:
        return [frost.Commitment(n.idx, n.commit.hidden_pn, n.commit.binder_pn)
                for n in self.nonces]

    def nonce_for(self, idx: int) -> NonceCommit:
        for n in self.nonces:
            if n.idx == idx:
                return n.commit
        raise WireError(f"session has no nonce for member {idx}")


@dataclass(frozen=True)
class SignResponse:
    idx: int
    psigs: list[tuple[bytes, int]]
    pubkey: Point
    sid: bytes
    nonce_code: bytes
    replenish: list[NonceCommit]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "idx": self.idx,
            "psigs": [[h.hex(), frost.scalar_bytes(z).hex()] for h, z in self.psigs],
            "pubkey": frost.ser(self.pubkey).hex(), "sid": self.sid.hex(),
            "nonce_code": self.nonce_code.hex(),
        }
        if self.replenish:
            out["replenish"] = [n.to_json() for n in self.replenish]
        return out

    @classmethod
    def from_json(cls, obj: Any) -> SignResponse:
        o = _obj(obj, "sign response")
        psigs = []
        for item in _list(o.get("psigs"), "psigs", 100):
            pair = _list(item, "psigs[]", 2)
            if len(pair) != 2:
                raise WireError("psigs[]: expected [sighash, psig]")
            z = int.from_bytes(_hex(pair[1], 32, "psig"), "big")
            if z >= N:
                raise WireError("psig: out of range")
            psigs.append((_hex(pair[0], 32, "psigs[].sighash"), z))
        return cls(_int(o.get("idx"), "idx", 1), psigs, _point(o.get("pubkey"), "pubkey"),
                   _hex(o.get("sid"), 32, "sid"), _hex(o.get("nonce_code"), 32, "nonce_code"),
                   parse_nonce_list(o.get("replenish"), "replenish"))


# --- ECDH -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcdhPackage:
    """``{"idx", "members", "entries": [{"ecdh_pk", "keyshare"}]}`` (request and reply)."""

    idx: int
    members: list[int]
    entries: list[tuple[bytes, Point]]  # (x-only ecdh_pk, keyshare)

    def to_json(self) -> dict[str, Any]:
        return {"idx": self.idx, "members": self.members,
                "entries": [{"ecdh_pk": pk.hex(), "keyshare": frost.ser(ks).hex()}
                            for pk, ks in self.entries]}

    @classmethod
    def from_json(cls, obj: Any) -> EcdhPackage:
        o = _obj(obj, "ecdh")
        members = _members(o, "ecdh")
        entries = []
        for e in _list(o.get("entries"), "entries", 100):
            eo = _obj(e, "entries[]")
            pk = _hex(eo.get("ecdh_pk"), 32, "entries[].ecdh_pk")
            entries.append((pk, _point(eo.get("keyshare"), "entries[].keyshare")))
        if not entries:
            raise WireError("ecdh.entries: empty")
        return cls(_int(o.get("idx"), "idx", 1), members, entries)


# --- ping -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    """A ping request or reply: protocol version, optional policy, optional nonces."""

    nonces: list[NonceCommit]
    version: int = PING_VERSION
    policy: dict[str, bool] | None = None

    def request_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.nonces:
            out["nonces"] = [n.to_json() for n in self.nonces]
        return out

    def reply_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy or {"send": True, "recv": True}}
        if self.nonces:
            out["nonces"] = [n.to_json() for n in self.nonces]
        return out

    @classmethod
    def parse_request(cls, param: str) -> Ping:
        if param in ("", "ping"):  # legacy v1 ping
            return cls([], version=1)
        o = _obj(_json(param, "ping"), "ping")
        return cls(parse_nonce_list(o.get("nonces"), "ping.nonces"),
                   version=_int(o.get("version", PING_VERSION), "ping.version"))

    @classmethod
    def parse_reply(cls, data: Any) -> Ping:
        o = _obj(data, "ping reply")
        policy = o.get("policy")
        pol = None
        if isinstance(policy, dict):
            pol = {k: bool(policy.get(k, True)) for k in ("send", "recv")}
        return cls(parse_nonce_list(o.get("nonces"), "ping.nonces"), policy=pol)
