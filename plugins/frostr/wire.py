"""Shared pieces of the FROSTR wire format: the error every parser raises, the small
validators they share, and compact JSON."""

from __future__ import annotations

import json
from typing import Any

from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.frost import FrostError, Point


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

