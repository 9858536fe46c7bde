"""The FROSTR coordination protocol (bifrost 2.x wire format), without I/O.

Message shapes, ids and nonce handling as @frostr/bifrost 2.0.2 speaks them (a recorded
sign request is in ``tests/vectors/frostr-bifrost/wire-sign-request.json``):
RPC envelopes (NIP-44 plaintexts of kind-20000 events), sign sessions with ``gid``/``sid``,
HMAC-derived nonces from pre-shared codes, ping and ECDH payloads. Every parser validates
its input fully and raises :class:`WireError` with a reason, so a malformed peer message
becomes a ``reject`` envelope (or is dropped) and never an exception elsewhere.

Shared validators are in :mod:`.wire`, nonces and the per-peer nonce pools in
:mod:`.nonces`; their names are importable from here too.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from oa_node.nostr import nip44
from oa_node.nostr.errors import ProtocolError
from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.encoding import GroupPackage
from oa_node.plugins.frostr.frost import Point
from oa_node.plugins.frostr.nonces import (
    BINDER_DOMAIN,
    CRITICAL_THRESHOLD,
    HIDDEN_DOMAIN,
    MIN_THRESHOLD,
    POOL_SIZE,
    REPLENISH_COUNT,
    NonceCommit,
    NonceJournal,
    NoncePools,
    derive_nonce,
    parse_nonce_list,
)
from oa_node.plugins.frostr.suite import N
from oa_node.plugins.frostr.wire import (
    WireError,
    _hex,
    _int,
    _json,
    _list,
    _members,
    _obj,
    _point,
    dumps,
)

RPC_KIND = 20000
RPC_VERSION = 1
PING_VERSION = 2
MAX_HASHES = 1  # one sighash per session: a nonce must never sign two messages
MAX_CONTENT_BYTES = 64 * 1024


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


__all__ = [
    "BINDER_DOMAIN",
    "CRITICAL_THRESHOLD",
    "HIDDEN_DOMAIN",
    "MAX_CONTENT_BYTES",
    "MAX_HASHES",
    "MIN_THRESHOLD",
    "PING_VERSION",
    "POOL_SIZE",
    "REPLENISH_COUNT",
    "RPC_KIND",
    "RPC_VERSION",
    "EcdhPackage",
    "Envelope",
    "NonceCommit",
    "NonceJournal",
    "NoncePools",
    "Ping",
    "SessionNonce",
    "SignResponse",
    "SignSession",
    "WireError",
    "_json",
    "accept",
    "decrypt_content",
    "derive_nonce",
    "dumps",
    "encrypt_content",
    "new_request_id",
    "parse_envelope",
    "parse_nonce_list",
    "reject",
    "request",
    "session_member_order",
]
