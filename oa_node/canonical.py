"""Canonical JSON (RFC 8785 / JCS style) and the hashes built on it: the one canonical form
in oa-node (job requests and results, verification digests, NIP-SA event content).

Two parties must compute the same hash from the same object without sharing code: object
keys sorted by UTF-16 code units, no whitespace, strings escaped minimally (only ``"``,
``\\`` and control characters), numbers in the ECMAScript shortest form (``1.0`` -> ``1``,
``1e21`` -> ``1e+21``). NaN, infinities, lone surrogates and non-string keys are refused.

An integer beyond 2**53 is written as the double it becomes in every JavaScript reader
(``2**60`` -> ``1152921504606847000``), as RFC 8785 requires; ``exact_integers=True``
refuses such an integer instead, for content that must carry a value unchanged to readers
that keep 64-bit integers (NIP-SA state and trajectories).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}


class CanonicalJSONError(ValueError):
    """The value has no canonical JSON form."""


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise CanonicalJSONError(f"lone surrogate U+{ord(ch):04X} in string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number(value: int | float, exact_integers: bool = False) -> str:
    if isinstance(value, int):
        # JCS numbers are IEEE doubles: beyond 2**53 an integer prints as its double does.
        if abs(value) <= 2**53:
            return str(value)
        if exact_integers:
            raise CanonicalJSONError(f"integer of {len(str(abs(value)))} digits is beyond "
                                     "2**53: a JSON number would not carry it exactly")
        try:
            return _number(float(value))
        except OverflowError:
            raise CanonicalJSONError(f"integer of {len(str(abs(value)))} digits is beyond "
                                     "the range of a JSON (IEEE double) number") from None
    if math.isnan(value) or math.isinf(value):
        raise CanonicalJSONError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    # repr() gives the shortest round-trip digits; re-lay them out the ECMAScript way.
    mantissa, _, exp_s = repr(abs(value)).partition("e")
    exponent = int(exp_s) if exp_s else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    point = len(int_part.lstrip("0")) + exponent if int_part.strip("0") else (
        exponent - (len(frac_part) - len(frac_part.lstrip("0")))
    )
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    sign = "-" if value < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    if k == 1:
        return sign + digits + exp
    return sign + digits[0] + "." + digits[1:] + exp


def _encode(value: Any, out: list[str], exact: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int | float):
        out.append(_number(value, exact))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, exact)
        out.append("]")
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalJSONError(f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out, exact)
        out.append("}")
    else:
        raise CanonicalJSONError(f"{type(value).__name__} is not a JSON value")


def canonical_json(obj: Any, *, exact_integers: bool = False) -> str:
    """The canonical JSON text of ``obj`` (dicts, lists, str, int, float, bool, None);
    :class:`CanonicalJSONError` when it has none (see the module docstring)."""
    out: list[str] = []
    _encode(obj, out, exact_integers)
    return "".join(out)


def canonical_bytes(obj: Any) -> bytes:
    return canonical_json(obj).encode("utf-8")


def canonical_hash(obj: Any) -> str:
    """Hex sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()


def loads(text: str | bytes) -> Any:
    """Parse JSON, refusing NaN/Infinity (also as an overflowing number such as ``1e400``)
    and duplicate object keys: values that have no canonical form to hash."""

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for k, v in pairs:
            if k in obj:
                raise CanonicalJSONError(f"duplicate object key {k!r}")
            obj[k] = v
        return obj

    def no_constant(name: str) -> Any:
        raise CanonicalJSONError(f"{name} is not valid JSON")

    def finite(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise CanonicalJSONError(f"number {literal[:40]} is beyond the range of a double")
        return value

    return json.loads(text, object_pairs_hook=no_dupes, parse_constant=no_constant,
                      parse_float=finite)
