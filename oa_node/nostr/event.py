"""NIP-01 events: strict parsing, exact id serialisation, BIP-340 signing and verification."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import Keypair, _hex_fullmatch, verify_schnorr
from oa_node.nostr.nip40 import expiration as _expiration

MAX_KIND = 65535
MAX_CREATED_AT = 2**32 - 1  # unsigned 32-bit seconds (year 2106)

# NIP-01 asks for exactly the escapes json.dumps makes with ensure_ascii=False: \" \\ \n \r
# \t \b \f, other C0 controls as \u00XX (as JSON.stringify does), everything else verbatim
# (U+2028/U+2029 and DEL included). One pre-built C encoder avoids per-call setup.
_json_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    # The C encoder itself, without JSONEncoder.encode's per-call construction: this is
    # the id hot path of every verification. Same arguments JSONEncoder would pass.
    _c_encode = _c_make_encoder(
        None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )

    def _id_encode(obj: Any) -> str:
        return "".join(_c_encode(obj, 0))
else:  # pragma: no cover - CPython always has the C accelerator
    _id_encode = _json_encoder.encode

_wire_encode = _json_encoder.encode
_json_loads = json.loads


def _is_hex64(s: object) -> bool:
    return type(s) is str and len(s) == 64 and _hex_fullmatch(s) is not None


def _check_tags(tags: object) -> list[list[str]]:
    if type(tags) is not list:
        raise ProtocolError("invalid", "event tags must be an array of arrays of strings")
    for tag in tags:
        if type(tag) is not list or not tag:
            raise ProtocolError("invalid", "each tag must be a non-empty array of strings")
        for item in tag:
            if type(item) is not str:
                raise ProtocolError("invalid", "tag elements must be strings")
    return tags  # type: ignore[return-value]


def serialize_for_id(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> bytes:
    """The exact NIP-01 byte string whose sha256 is the event id."""
    try:
        return _id_encode([0, pubkey, created_at, kind, tags, content]).encode()
    except UnicodeEncodeError:
        raise ProtocolError("invalid", "event contains a lone surrogate (not UTF-8)") from None


def compute_event_id(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> str:
    return sha256(serialize_for_id(pubkey, created_at, kind, tags, content)).hexdigest()


@dataclass(slots=True)
class Event:
    """A signed Nostr event. Construct from the wire with :meth:`from_dict`/:meth:`from_json`."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]]
    content: str
    sig: str

    # --- parsing ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, obj: Any) -> Event:
        """Strict shape and type checks; raises ProtocolError. Unknown keys are ignored."""
        if type(obj) is not dict:
            raise ProtocolError("invalid", "event must be a JSON object")
        try:
            eid = obj["id"]
            pubkey = obj["pubkey"]
            created_at = obj["created_at"]
            kind = obj["kind"]
            tags = obj["tags"]
            content = obj["content"]
            sig = obj["sig"]
        except KeyError as exc:
            raise ProtocolError("invalid", f"event is missing field {exc.args[0]!r}") from None
        if not _is_hex64(eid):
            raise ProtocolError("invalid", "event id must be 64 lowercase hex characters")
        if not _is_hex64(pubkey):
            raise ProtocolError("invalid", "event pubkey must be 64 lowercase hex characters")
        if type(sig) is not str or len(sig) != 128 or _hex_fullmatch(sig) is None:
            raise ProtocolError("invalid", "event sig must be 128 lowercase hex characters")
        if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
            raise ProtocolError("invalid", f"created_at must be an integer 0..{MAX_CREATED_AT}")
        if type(kind) is not int or not 0 <= kind <= MAX_KIND:
            raise ProtocolError("invalid", f"kind must be an integer 0..{MAX_KIND}")
        if type(content) is not str:
            raise ProtocolError("invalid", "event content must be a string")
        _check_tags(tags)
        return cls(eid, pubkey, created_at, kind, tags, content, sig)

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        try:
            obj = _json_loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("invalid", f"event is not valid JSON: {exc}") from None
        return cls.from_dict(obj)

    # --- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": self.tags,
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        """Compact wire JSON (UTF-8 verbatim, same escaping as the id serialisation)."""
        return _wire_encode(self.to_dict())

    def serialize_for_id(self) -> bytes:
        return serialize_for_id(self.pubkey, self.created_at, self.kind, self.tags, self.content)

    def compute_id(self) -> str:
        return sha256(self.serialize_for_id()).hexdigest()

    # --- verification ----------------------------------------------------------------
    def verify_id(self) -> bool:
        try:
            return self.compute_id() == self.id
        except (ProtocolError, TypeError, ValueError):
            return False

    def verify_signature(self) -> bool:
        try:
            msg = bytes.fromhex(self.id)
            sig = bytes.fromhex(self.sig)
        except (TypeError, ValueError):
            return False
        if len(msg) != 32:
            return False
        return verify_schnorr(self.pubkey, msg, sig)

    def verify(self) -> bool:
        """Id matches the content and the signature is valid. Never raises."""
        try:
            digest = sha256(
                _id_encode(
                    [0, self.pubkey, self.created_at, self.kind, self.tags, self.content]
                ).encode()
            ).digest()
            if digest.hex() != self.id:
                return False
            sig = bytes.fromhex(self.sig)
        except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
            return False
        return verify_schnorr(self.pubkey, digest, sig)

    # --- tag helpers -----------------------------------------------------------------
    def tag_values(self, name: str) -> list[str]:
        """Every ``tag[1]`` of tags named ``name``, in order."""
        return [t[1] for t in self.tags if len(t) > 1 and t[0] == name]

    def first_tag_value(self, name: str) -> str | None:
        for t in self.tags:
            if len(t) > 1 and t[0] == name:
                return t[1]
        return None

    @property
    def d_tag(self) -> str:
        """The ``d`` identifier of an addressable event ("" when absent)."""
        v = self.first_tag_value("d")
        return "" if v is None else v

    @property
    def address(self) -> str | None:
        """``kind:pubkey:d`` for addressable kinds (30000-39999), else None."""
        if 30000 <= self.kind < 40000:
            return f"{self.kind}:{self.pubkey}:{self.d_tag}"
        return None

    @property
    def expiration(self) -> int | None:
        """NIP-40 expiration timestamp (None if absent or malformed)."""
        return _expiration(self)


@dataclass
class EventTemplate:
    """An unsigned event; ``created_at=None`` means "now" at signing time."""

    kind: int
    content: str = ""
    tags: list[list[str]] = field(default_factory=list)
    created_at: int | None = None


def sign_event(template: EventTemplate, secret: bytes) -> Event:
    """Sign ``template`` with ``secret``; validates the template like a received event."""
    kind = template.kind
    if type(kind) is not int or not 0 <= kind <= MAX_KIND:
        raise ProtocolError("invalid", f"kind must be an integer 0..{MAX_KIND}")
    created_at = int(time.time()) if template.created_at is None else template.created_at
    if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
        raise ProtocolError("invalid", f"created_at must be an integer 0..{MAX_CREATED_AT}")
    if type(template.content) is not str:
        raise ProtocolError("invalid", "event content must be a string")
    tags = [list(t) if isinstance(t, list | tuple) else t for t in template.tags]
    _check_tags(tags)
    keypair = Keypair(secret)
    pubkey = keypair.public_key.hex()
    digest = sha256(serialize_for_id(pubkey, created_at, kind, tags, template.content)).digest()
    sig = keypair.sign(digest)
    return Event(digest.hex(), pubkey, created_at, kind, tags, template.content, sig.hex())
