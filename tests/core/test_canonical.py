"""Canonical JSON (JCS rules) and the hashes on top of it."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oa_node.canonical import (
    CanonicalJSONError,
    canonical_hash,
    canonical_json,
    loads,
)


def test_rfc8785_example() -> None:
    # RFC 8785 section 3.2.2: the sample input and its canonical form.
    text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
            ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
            ' "literals": [null, true, false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
                '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(json.loads(text)) == expected


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (-0.0, "0"), (1.0, "1"), (100.0, "100"), (1e21, "1e+21"),
    (1e20, "100000000000000000000"), (123.456, "123.456"), (1e-6, "0.000001"), (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"), (-0.5, "-0.5"), (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (2**53, "9007199254740992"),
    (2**60, "1152921504606847000"),
])
def test_numbers_use_the_ecmascript_form(value: float, text: str) -> None:
    assert canonical_json(value) == text


def test_keys_sort_by_utf16_code_units_and_strings_escape_minimally() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FF61 (code point order differs).
    obj = {"\uff61": 1, "\U0001f600": 2, "b": [1, "x\u0001\t\u007f"], "a": None}
    assert canonical_json(obj) == '{"a":null,"b":[1,"x\\u0001\\t\u007f"],"😀":2,"｡":1}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "x"}, "\ud800", object(),
                                 10**400, [-(10**309)]],
                         ids=["nan", "inf", "int-key", "lone-surrogate", "object", "huge-int",
                              "huge-negative-int"])
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(bad)


def test_hash_is_sha256_of_the_canonical_utf8_bytes() -> None:
    obj = {"b": 2, "a": "é"}
    assert canonical_hash(obj) == hashlib.sha256('{"a":"é","b":2}'.encode()).hexdigest()


def test_loads_refuses_duplicate_keys_and_nan() -> None:
    with pytest.raises(CanonicalJSONError, match="duplicate"):
        loads('{"a": 1, "a": 2}')
    with pytest.raises(CanonicalJSONError):
        loads('{"a": NaN}')
    with pytest.raises(CanonicalJSONError, match="range"):
        loads('{"a": [1e400]}')  # json.loads alone would give inf, which has no JSON form
    assert loads('{"a": 1e300}') == {"a": 1e300}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_text_parses_back_to_the_same_value(value: object) -> None:
    try:
        text = canonical_json(value)
    except CanonicalJSONError:
        return  # lone surrogates from st.text()
    # JSON numbers carry no int/float distinction: compare numbers as doubles.
    assert _as_doubles(json.loads(text)) == _as_doubles(value)
    assert canonical_json(json.loads(text)) == text


def _as_doubles(v: object) -> object:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, list):
        return [_as_doubles(x) for x in v]
    assert isinstance(v, dict)
    return {k: _as_doubles(x) for k, x in v.items()}


def test_exact_integers_refuses_what_a_double_would_round() -> None:
    assert (canonical_json([2**53, -(2**53)], exact_integers=True)
            == "[9007199254740992,-9007199254740992]")
    with pytest.raises(CanonicalJSONError, match="2\\*\\*53"):
        canonical_json({"a": [2**53 + 1]}, exact_integers=True)
    assert canonical_json(2**60) == "1152921504606847000"  # the JCS form, as before
