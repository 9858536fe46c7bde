"""NIP-90/89 parsers on hostile input: a clean ProtocolError or a sane value, never a crash."""

from __future__ import annotations

import json

import pytest

from oa_node.nostr import kinds, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import EventTemplate
from oa_node.signer import LocalSigner

SCHEMA = "oa.sandbox_run.v1"
signer = LocalSigner.generate()


def handler(content: str, tags: list[list[str]] | None = None) -> nip90.HandlerInfo:
    template = EventTemplate(kind=kinds.HANDLER_INFO, content=content,
                             tags=[["d", "x"], *(tags or [])])
    return nip90.parse_handler(signer.sign_now(template))


@pytest.mark.parametrize("pricing", [[1, 2], "free", 5, True])
def test_handler_pricing_that_is_not_a_table_is_ignored(pricing: object) -> None:
    info = handler(json.dumps({"name": "p", "pricing": pricing}))
    assert info.pricing_msat == {}
    assert info.name == "p"


def test_handler_k_tags_take_ascii_kind_numbers_only() -> None:
    # "²" and "٣" are str.isdigit(); the first makes int() raise, the second is not a kind
    info = handler("{}", [["k", "5050"], ["k", "²"], ["k", "٣"], ["k", "9" * 5000], ["k", "5930"]])
    assert info.kinds == [5050, 5930]


def result_with_amount(value: str) -> nip90.JobResult:
    req = signer.sign_now(nip90.request_template(SCHEMA, "{}"))
    template = nip90.result_template(req, "{}", SCHEMA)
    template.tags.append(["amount", value])
    return nip90.parse_result(signer.sign_now(template))


@pytest.mark.parametrize("value", ["-5", " 5", "5 ", "1_000", "+5", "٣", "9" * 5000])
def test_result_amount_must_be_plain_non_negative_digits(value: str) -> None:
    with pytest.raises(ProtocolError) as info:
        result_with_amount(value)
    assert info.value.prefix == "invalid"
    assert len(str(info.value)) < 200  # a hostile value is not echoed in full


def test_result_amount_plain_digits() -> None:
    assert result_with_amount("21000").amount == nip90.Amount(21000, None)


@pytest.mark.parametrize("value", ["1_000", " 7", "+7", "9" * 5000])
def test_request_bid_must_be_plain_digits(value: str) -> None:
    template = nip90.request_template(SCHEMA, "{}")
    template.tags.append(["bid", value])
    with pytest.raises(ProtocolError, match="bid tag is not an integer"):
        nip90.parse_request(signer.sign_now(template))
