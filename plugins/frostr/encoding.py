"""``bfgroup1…`` / ``bfshare1…`` strings, byte-compatible with FROSTR (bifrost 2.x).

Layouts (all integers u32 big-endian, points 33-byte compressed):

- ``bfshare``: ``idx ‖ seckey(32)`` (36 bytes). The legacy 1.x 100-byte form
  ``idx ‖ seckey ‖ binder_seed ‖ hidden_seed`` is decoded (seeds dropped), never written.
- ``bfgroup``: ``group_pk(33) ‖ threshold ‖ (idx ‖ pubkey(33))*n``. The legacy 103-byte member
  entries (with two extra 33-byte points) are decoded, never written.

Both are bech32m without the 90-character limit. Unlike the reference decoder, this one
checks that every point is on the curve, that indexes are unique and non-zero, that the
threshold fits, and that the member keys lie on one polynomial through the group key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from oa_node.nostr import bech32
from oa_node.nostr.errors import ProtocolError
from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.frost import FrostError, Point
from oa_node.plugins.frostr.suite import N

GROUP_HRP = "bfgroup"
SHARE_HRP = "bfshare"
_LIMIT = 100_000  # 1000 members ≈ 60 k characters


class EncodingError(ValueError):
    """A group or share string that cannot be used; the message says why."""


@dataclass(frozen=True)
class GroupPackage:
    """The public description of a k-of-n group: group key, threshold, member keys."""

    group_pk: Point
    threshold: int
    members: Mapping[int, Point] = field(default_factory=dict)

    @cached_property
    def public_key(self) -> str:
        """The group's Nostr identity (x-only hex = the npub's key)."""
        return frost.xonly(self.group_pk).hex()

    @cached_property
    def gid(self) -> bytes:
        """bifrost group id: sha256(group_pk ‖ threshold ‖ member keys by idx)."""
        h = hashlib.sha256(frost.ser(self.group_pk) + self.threshold.to_bytes(4, "big"))
        for i in sorted(self.members):
            h.update(frost.ser(self.members[i]))
        return h.digest()

    @cached_property
    def member_keys(self) -> dict[int, str]:
        """idx -> x-only hex share key (each member's Nostr transport key)."""
        return {i: frost.xonly(p).hex() for i, p in self.members.items()}

    @cached_property
    def index_of(self) -> dict[str, int]:
        return {k: i for i, k in self.member_keys.items()}

    def validate(self) -> None:
        try:
            frost.check_public_shares(self.group_pk, self.threshold, self.members)
        except FrostError as exc:
            raise EncodingError(f"inconsistent group: {exc}") from None
        if len(set(self.member_keys.values())) != len(self.members):
            raise EncodingError("inconsistent group: two members share a key")

    def to_bytes(self) -> bytes:
        out = bytearray(frost.ser(self.group_pk) + self.threshold.to_bytes(4, "big"))
        for i in sorted(self.members):
            out += i.to_bytes(4, "big") + frost.ser(self.members[i])
        return bytes(out)

    def encode(self) -> str:
        return bech32.encode(GROUP_HRP, self.to_bytes(), bech32.Encoding.BECH32M, _LIMIT)

    def to_json(self) -> dict[str, object]:
        """The JSON form bifrost uses in ``onboard`` replies."""
        return {
            "group_pk": frost.ser(self.group_pk).hex(),
            "threshold": self.threshold,
            "members": [{"idx": i, "pubkey": frost.ser(self.members[i]).hex()}
                        for i in sorted(self.members)],
        }


@dataclass(frozen=True)
class SharePackage:
    """One holder's secret share; ``seckey`` is also its Nostr transport key."""

    idx: int
    seckey: int

    @cached_property
    def public(self) -> Point:
        return frost.base_mul(self.seckey)

    @cached_property
    def public_key(self) -> str:
        return frost.xonly(self.public).hex()

    @property
    def secret_bytes(self) -> bytes:
        return frost.scalar_bytes(self.seckey)

    def to_bytes(self) -> bytes:
        return self.idx.to_bytes(4, "big") + self.secret_bytes

    def encode(self) -> str:
        return bech32.encode(SHARE_HRP, self.to_bytes(), bech32.Encoding.BECH32M, _LIMIT)

    def __repr__(self) -> str:  # never print the secret by accident
        return f"SharePackage(idx={self.idx}, public_key={self.public_key})"


def _decode(text: str, hrp: str) -> bytes:
    text = text.strip()
    try:
        got_hrp, data, spec = bech32.decode(text, _LIMIT)
    except ProtocolError as exc:
        raise EncodingError(f"not a valid {hrp} string: {exc.reason}") from None
    if got_hrp != hrp:
        raise EncodingError(f"expected a {hrp}1… string, got prefix {got_hrp!r}")
    if spec is not bech32.Encoding.BECH32M:
        raise EncodingError(f"{hrp} strings use a bech32m checksum, not bech32")
    return data


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 4], "big")


def _point(data: bytes, what: str) -> Point:
    try:
        return frost.point_from_bytes(data)
    except FrostError as exc:
        raise EncodingError(f"{what}: {exc}") from None


def group_from_bytes(data: bytes, *, validate: bool = True) -> GroupPackage:
    if len(data) < 37 + 37:
        raise EncodingError("group data too short")
    group_pk = _point(data[:33], "group key")
    threshold = _u32(data, 33)
    rest = len(data) - 37
    if rest % 37 == 0 and rest % 103 != 0:
        size = 37
    elif rest % 103 == 0:
        size = 103  # legacy 1.x entries: idx ‖ pubkey ‖ binder_pn ‖ hidden_pn
    else:
        raise EncodingError(f"group data has a bad length ({len(data)} bytes)")
    members: dict[int, Point] = {}
    for off in range(37, len(data), size):
        idx = _u32(data, off)
        if idx == 0 or idx >= N:
            raise EncodingError("member index must be at least 1")
        if idx in members:
            raise EncodingError(f"member index {idx} appears twice")
        members[idx] = _point(data[off + 4:off + 37], f"member {idx} key")
    if not 1 <= threshold <= len(members):
        raise EncodingError(f"threshold {threshold} does not fit {len(members)} members")
    group = GroupPackage(group_pk, threshold, members)
    if validate:
        group.validate()
    return group


def decode_group(text: str, *, validate: bool = True) -> GroupPackage:
    """Parse a ``bfgroup1…`` string (checked for consistency unless ``validate=False``)."""
    return group_from_bytes(_decode(text, GROUP_HRP), validate=validate)


def share_from_bytes(data: bytes) -> SharePackage:
    if len(data) not in (36, 100):
        raise EncodingError(f"share data must be 36 bytes (or 100 legacy), got {len(data)}")
    idx = _u32(data, 0)
    if idx == 0:
        raise EncodingError("share index must be at least 1")
    try:
        seckey = frost.scalar_from_bytes(data[4:36])
    except FrostError as exc:
        raise EncodingError(f"share secret: {exc}") from None
    return SharePackage(idx, seckey)


def decode_share(text: str) -> SharePackage:
    """Parse a ``bfshare1…`` string."""
    return share_from_bytes(_decode(text, SHARE_HRP))


def check_share(group: GroupPackage, share: SharePackage) -> None:
    """The share belongs to the group: its public key is the member key at its index."""
    member = group.members.get(share.idx)
    if member is None:
        raise EncodingError(f"share index {share.idx} is not a member of the group")
    if frost.ser(member) != frost.ser(share.public):
        raise EncodingError(f"share {share.idx} does not match the group's member key")


def from_dealer(pkg: frost.DealerPackage) -> tuple[GroupPackage, list[SharePackage]]:
    group = GroupPackage(pkg.group_pk, pkg.threshold, pkg.members)
    return group, [SharePackage(s.idx, s.secret) for s in pkg.shares]
