"""NIP-01 filters: strict parsing and matching semantics."""

from __future__ import annotations

from typing import Any

import pytest

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.filter import Filter, matches_any
from oa_node.nostr.keys import public_key_hex

SK = bytes.fromhex("01" * 32)
PK = public_key_hex(SK)
OTHER = "ab" * 32


def ev(
    kind: int = 1,
    created_at: int = 1000,
    tags: list[list[str]] | None = None,
    content: str = "Hello Nostr world",
) -> Event:
    tpl = EventTemplate(kind=kind, content=content, tags=tags or [], created_at=created_at)
    return sign_event(tpl, SK)


E = ev(tags=[["e", "11" * 32], ["p", OTHER], ["t", "python"], ["t", "nostr"], ["x"]])


@pytest.mark.parametrize(
    ("fdict", "expected"),
    [
        ({}, True),
        ({"ids": [E.id]}, True),
        ({"ids": ["00" * 32]}, False),
        ({"ids": []}, False),
        ({"authors": [PK, OTHER]}, True),
        ({"authors": [OTHER]}, False),
        ({"kinds": [0, 1]}, True),
        ({"kinds": [7]}, False),
        ({"since": 1000}, True),  # inclusive
        ({"since": 1001}, False),
        ({"until": 1000}, True),  # inclusive
        ({"until": 999}, False),
        ({"since": 1000, "until": 1000}, True),
        ({"#e": ["11" * 32]}, True),
        ({"#p": [OTHER, PK]}, True),
        ({"#p": [PK]}, False),
        ({"#t": ["rust", "nostr"]}, True),
        ({"#t": ["nostr"], "#p": [OTHER]}, True),  # AND across tags
        ({"#t": ["nostr"], "#p": [PK]}, False),
        ({"#x": ["anything"]}, False),  # a one-element tag has no value
        ({"#q": ["x"]}, False),
        ({"#t": []}, False),
        ({"kinds": [1], "authors": [PK], "#t": ["python"], "limit": 1}, True),
        ({"kinds": [1], "authors": [OTHER], "#t": ["python"]}, False),
        ({"search": "hello WORLD"}, True),
        ({"search": "hello mars"}, False),
        ({"search": "nostr include:spam"}, True),  # extension terms are ignored
        ({"unknown_key": 5, "kinds": [1]}, True),  # unknown keys ignored
    ],
)
def test_matches(fdict: dict, expected: bool) -> None:
    assert Filter.from_dict(fdict).matches(E) is expected


def test_limit_does_not_affect_matching() -> None:
    assert Filter.from_dict({"limit": 0}).matches(E)


def test_matches_any_is_or() -> None:
    fs = [Filter.from_dict({"kinds": [7]}), Filter.from_dict({"authors": [PK]})]
    assert matches_any(fs, E)
    assert not matches_any(fs[:1], E)
    assert not matches_any([], E)


@pytest.mark.parametrize(
    "fdict",
    [
        [],
        "x",
        {"ids": "ab" * 32},
        {"ids": ["AB" * 32]},
        {"ids": ["ab"]},  # prefixes are not supported
        {"authors": [1]},
        {"kinds": [1.5]},
        {"kinds": [True]},
        {"kinds": [70000]},
        {"kinds": 1},
        {"since": "1"},
        {"since": -1},
        {"until": 1.0},
        {"limit": -1},
        {"limit": None},
        {"#e": "x"},
        {"#e": [1]},
        {"#ee": ["x"]},
        {"#": ["x"]},
        {"#1": ["x"]},
        {"search": 5},
    ],
)
def test_from_dict_rejects(fdict: Any) -> None:
    with pytest.raises(ProtocolError) as exc:
        Filter.from_dict(fdict)
    assert exc.value.prefix == "invalid"


def test_to_dict_roundtrip() -> None:
    d = {
        "ids": [E.id],
        "authors": sorted([PK, OTHER]),
        "kinds": [1, 30023],
        "#e": ["11" * 32],
        "#T": ["Up"],
        "since": 1,
        "until": 2,
        "limit": 10,
        "search": "q",
    }
    f = Filter.from_dict(d)
    assert f.to_dict() == {**d, "#T": ["Up"]}
    assert Filter.from_dict(f.to_dict()) == f


def test_python_constructor_accepts_lists() -> None:
    f = Filter(kinds=[1], authors=(PK,), tags={"t": ["python"]})
    assert f.kinds == {1} and f.authors == {PK} and f.tags == {"t": {"python"}}
    assert f.matches(E)


def test_tag_letters_are_case_sensitive() -> None:
    e = ev(tags=[["T", "x"]])
    assert Filter.from_dict({"#T": ["x"]}).matches(e)
    assert not Filter.from_dict({"#t": ["x"]}).matches(e)
