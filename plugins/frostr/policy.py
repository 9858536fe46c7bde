"""What a share holder agrees to do for its peers: the gate before every partial signature.

bifrost's signers see only a sighash and sign whatever a member asks. A holder here applies
a :class:`Policy` first. By default it signs only what it can see: the requester sends the
event's NIP-01 serialisation in the session's ``content``, the holder recomputes the id
(which must equal the sighash), checks that the event is by the group key, of an allowed
kind, and passes every extra check. A bare 32-byte hash (what bifrost requesters send) is
signed only when ``allow_bare_hashes`` is set. Then a per-peer rate limit applies.

Extra checks come from ``Policy.checks``; plugins add theirs through the
``register_frost_policies`` hook (see ``oa_node.hookspecs``), which the frostr plugin wires
into every holder it runs. A check that raises refuses (fails closed).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

log = logging.getLogger("oa_node.frostr")


@dataclass(frozen=True)
class SignRequest:
    """What a policy sees about one requested partial signature."""

    requester: str  # x-only share key of the peer asking
    requester_idx: int
    sighash: bytes
    #: the event being signed (``pubkey``, ``created_at``, ``kind``, ``tags``, ``content``),
    #: parsed from the session's ``content`` and already checked to hash to ``sighash`` and to
    #: be by the group key; None for a bare hash (only when ``allow_bare_hashes`` is set)
    event: dict[str, Any] | None


#: an extra check: return None to allow, or a reason to refuse
PolicyCheck = Callable[[SignRequest], str | None]


class RateLimiter:
    """A token bucket per peer: ``rate`` per minute with a burst of ``burst``."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


def event_from_content(content_hex: str | None, sighash: bytes,
                       group_pubkey: str) -> dict[str, Any] | None:
    """Parse a session's ``content`` as the NIP-01 serialisation of the event being signed.

    Returns None when there is no content. Raises ValueError when there is content that is
    not an event by the group key hashing to ``sighash`` (a requester lying about what is
    being signed)."""
    if content_hex is None:
        return None
    raw = bytes.fromhex(content_hex)
    if sha256(raw).digest() != sighash:
        raise ValueError("session content does not hash to the sighash")
    try:
        arr = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("session content is not a serialised event") from None
    if (not isinstance(arr, list) or len(arr) != 6 or arr[0] != 0
            or not isinstance(arr[3], int) or not isinstance(arr[4], list)):
        raise ValueError("session content is not a serialised event")
    if arr[1] != group_pubkey:
        raise ValueError("session content is an event by another key")
    return {"pubkey": arr[1], "created_at": arr[2], "kind": arr[3], "tags": arr[4],
            "content": arr[5]}


BARE_HASH_REFUSED = ("policy: this holder signs only events it can check; send the event as "
                     "content (or set [frostr.policy] allow_bare_hashes = true)")


@dataclass
class Policy:
    """A holder's rules. The defaults sign Nostr events of any kind by the group key that
    the requester shows, for any group member, rate-limited; never a bare hash."""

    #: event kinds this holder signs; None = any kind (the event must still be shown)
    allowed_kinds: frozenset[int] | None = None
    #: sign a bare 32-byte hash that comes without its event (bifrost requesters send only
    #: that): any member can then get any hash signed. Never with ``allowed_kinds``.
    allow_bare_hashes: bool = False
    #: partial signatures per minute per peer (0 = unlimited), with this burst
    rate_per_minute: float = 120.0
    burst: int = 30
    allow_ecdh: bool = True
    #: ECDH answers per minute per peer (0 = unlimited)
    ecdh_per_minute: float = 120.0
    checks: list[PolicyCheck] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.allow_bare_hashes and self.allowed_kinds is not None:
            raise ValueError("allow_bare_hashes cannot be combined with allowed_kinds "
                             "(a bare hash has no kind to check)")
        self._sign_rate = RateLimiter(self.rate_per_minute, self.burst)
        self._ecdh_rate = RateLimiter(self.ecdh_per_minute, self.burst)

    def check_sign(self, req: SignRequest) -> str | None:
        """None to sign, else the reason for the ``reject`` envelope."""
        if req.event is None:
            if not self.allow_bare_hashes:
                return BARE_HASH_REFUSED
        elif self.allowed_kinds is not None and req.event["kind"] not in self.allowed_kinds:
            return f"policy: kind {req.event['kind']} is not allowed"
        for check in self.checks:
            try:
                reason = check(req)
            except Exception:  # a broken check refuses: it must never sign by accident
                log.exception("frostr: policy check %r failed; refusing", check)
                return "policy: a check failed on this request"
            if reason:
                return f"policy: {reason}"
        if not self._sign_rate.allow(req.requester):
            return "rate-limited: too many signing requests"
        return None

    def check_ecdh(self, requester: str) -> str | None:
        if not self.allow_ecdh:
            return "policy: this holder does not take part in ECDH"
        if not self._ecdh_rate.allow(requester):
            return "rate-limited: too many ECDH requests"
        return None
