"""NIP-90 / NIP-89 / NIP-32 event building and parsing (pure, no relay)."""

from __future__ import annotations

import json

import pytest

from oa_node.nostr import kinds, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.signer import LocalSigner

SCHEMA = "oa.sandbox_run.v1"


@pytest.fixture
def buyer() -> LocalSigner:
    return LocalSigner.generate()


@pytest.fixture
def provider() -> LocalSigner:
    return LocalSigner.generate()


def test_request_round_trip(buyer: LocalSigner, provider: LocalSigner) -> None:
    t = nip90.request_template(SCHEMA, '{"commands":[]}', bid_msat=5000,
                               relays=["ws://127.0.0.1:1"], provider=provider.public_key,
                               expiration=2_000_000_000)
    ev = buyer.sign_now(t)
    assert ev.kind == kinds.JOB_REQUEST
    req = nip90.parse_request(ev)
    assert req.schema == SCHEMA and req.bid_msat == 5000 and req.expiration == 2_000_000_000
    assert req.relays == ["ws://127.0.0.1:1"] and req.providers == [provider.public_key]
    assert not req.encrypted and req.buyer == buyer.public_key
    assert req.result_kind == kinds.JOB_RESULT
    assert req.is_for(provider.public_key) and not req.is_for(buyer.public_key)
    assert ["t", SCHEMA] in ev.tags and ["param", "schema", SCHEMA] in ev.tags


def test_open_request_is_for_everyone_and_dedicated_kinds(buyer: LocalSigner) -> None:
    ev = buyer.sign_now(nip90.request_template(SCHEMA, "{}", dedicated_kind=True))
    assert ev.kind == kinds.JOB_REQUEST_SANDBOX_RUN
    req = nip90.parse_request(ev)
    assert req.is_for("ab" * 32) and req.result_kind == kinds.JOB_RESULT_SANDBOX_RUN
    # an unknown schema has no dedicated kind: it stays on 5050
    assert nip90.request_template("x.y.v1", "{}", dedicated_kind=True).kind == kinds.JOB_REQUEST


def test_several_providers_and_encryption_rules(buyer: LocalSigner) -> None:
    a, b = "aa" * 32, "bb" * 32
    ev = buyer.sign_now(nip90.request_template(SCHEMA, "{}", providers=[a, b, a]))
    assert nip90.parse_request(ev).providers == [a, b]
    with pytest.raises(ValueError, match="exactly one provider"):
        nip90.request_template(SCHEMA, "x", encrypted=True)
    with pytest.raises(ValueError, match="exactly one provider"):
        nip90.request_template(SCHEMA, "x", encrypted=True, providers=[a, b])
    enc = buyer.sign_now(nip90.request_template(SCHEMA, "x", encrypted=True, provider=a))
    assert nip90.parse_request(enc).encrypted


@pytest.mark.parametrize("tags, message", [
    ([["t", SCHEMA], ["bid", "ten"]], "bid tag is not an integer"),
    ([["t", SCHEMA], ["bid", "-1"]], "bid tag is negative"),
    ([["t", SCHEMA], ["expiration", "soon"]], "expiration tag is not an integer"),
    ([], "no schema"),
])
def test_bad_requests(buyer: LocalSigner, tags: list[list[str]], message: str) -> None:
    ev = buyer.sign_now(EventTemplate(kind=kinds.JOB_REQUEST, content="{}", tags=tags))
    with pytest.raises(ProtocolError, match=message):
        nip90.parse_request(ev)
    with pytest.raises(ProtocolError, match="not a job request"):
        nip90.parse_request(buyer.sign_now(EventTemplate(kind=1, content="")))


def test_feedback_and_result_bind_to_their_request(buyer: LocalSigner,
                                                   provider: LocalSigner) -> None:
    req = buyer.sign_now(nip90.request_template(SCHEMA, "{}", dedicated_kind=True))
    fb = provider.sign_now(nip90.feedback_template(req, "error", "busy",
                                                   amount=nip90.Amount(7)))
    parsed = nip90.parse_feedback(fb)
    assert (parsed.request_id, parsed.status, parsed.info, parsed.provider) == (
        req.id, "error", "busy", provider.public_key)
    assert parsed.amount == nip90.Amount(7, None)
    with pytest.raises(ValueError):
        nip90.feedback_template(req, "done")
    res = provider.sign_now(nip90.result_template(req, '{"status":"success"}', SCHEMA,
                                                  amount=nip90.Amount(2000, "lnbcrt1x"),
                                                  encrypted=True,
                                                  extra_tags=[["trajectory", "s", "r"]]))
    assert res.kind == kinds.JOB_RESULT_SANDBOX_RUN
    r = nip90.parse_result(res)
    assert r.request_id == req.id and r.request == req and r.encrypted
    assert r.amount == nip90.Amount(2000, "lnbcrt1x") and r.extra["trajectory"] == ["s", "r"]
    assert buyer.public_key in res.tag_values("p")


def test_result_whose_request_tag_lies_is_refused(buyer: LocalSigner,
                                                  provider: LocalSigner) -> None:
    req = buyer.sign_now(nip90.request_template(SCHEMA, "{}"))
    other = buyer.sign_now(nip90.request_template(SCHEMA, '{"x":1}'))
    t = nip90.result_template(req, "{}", SCHEMA)
    t.tags = [["request", other.to_json()] if tag[0] == "request" else tag for tag in t.tags]
    with pytest.raises(ProtocolError, match="does not match its e tag"):
        nip90.parse_result(provider.sign_now(t))
    bad_amount = nip90.result_template(req, "{}", SCHEMA)
    bad_amount.tags.append(["amount", "lots"])
    with pytest.raises(ProtocolError, match="amount is not an integer"):
        nip90.parse_result(provider.sign_now(bad_amount))
    no_e = EventTemplate(kind=kinds.JOB_RESULT, content="{}", tags=[])
    with pytest.raises(ProtocolError, match="e tag"):
        nip90.parse_result(provider.sign_now(no_e))


def test_handler_announcement(provider: LocalSigner) -> None:
    t = nip90.handler_template("pylon", {SCHEMA: 5000, "oa.repo_index.v1": 1000}, name="p",
                               limits={"concurrency": 2}, relays=["ws://127.0.0.1:9"],
                               expiration=2_000_000_000)
    ev = provider.sign_now(t)
    info = nip90.parse_handler(ev)
    assert info.identifier == "pylon" and info.name == "p"
    assert sorted(info.kinds) == [kinds.JOB_REQUEST, kinds.JOB_REQUEST_SANDBOX_RUN,
                                  kinds.JOB_REQUEST_REPO_INDEX]
    assert info.pricing_msat == {SCHEMA: 5000, "oa.repo_index.v1": 1000}
    assert info.limits == {"concurrency": 2} and ev.expiration == 2_000_000_000
    generic = nip90.parse_handler(provider.sign_now(nip90.handler_template(
        "pylon", {SCHEMA: 1}, dedicated_kinds=False)))
    assert generic.kinds == [kinds.JOB_REQUEST]
    # hostile content: bad prices are dropped, non-objects refused
    junk = provider.sign_now(EventTemplate(kind=kinds.HANDLER_INFO, tags=[["d", "x"]],
                                           content=json.dumps({"pricing": {
                                               "a": -1, "b": True, "c": {"amount_msat": 3}},
                                               "limits": []})))
    parsed = nip90.parse_handler(junk)
    assert parsed.pricing_msat == {"c": 3} and parsed.limits == {}
    for content in ("[1]", "{"):
        ev = provider.sign_now(EventTemplate(kind=kinds.HANDLER_INFO, content=content))
        with pytest.raises(ProtocolError):
            nip90.parse_handler(ev)


def test_verdict_label(buyer: LocalSigner, provider: LocalSigner) -> None:
    req = buyer.sign_now(nip90.request_template(SCHEMA, "{}"))
    res = provider.sign_now(nip90.result_template(req, "{}", SCHEMA))
    label = buyer.sign_now(nip90.verdict_template(res, req.id, "fail", "lied", SCHEMA))
    assert label.kind == kinds.LABEL and label.content == "lied"
    assert nip90.parse_verdict(label) == ("fail", res.id, provider.public_key)
    assert nip90.parse_verdict(req) is None
    other_ns = buyer.sign_now(EventTemplate(kind=kinds.LABEL, tags=[
        ["L", "x"], ["l", "pass", "x"], ["e", res.id], ["p", provider.public_key]]))
    assert nip90.parse_verdict(other_ns) is None


def test_event_identity_is_preserved_through_the_request_tag(buyer: LocalSigner,
                                                             provider: LocalSigner) -> None:
    req = buyer.sign_now(nip90.request_template(SCHEMA, '{"é":"ü"}'))
    res = provider.sign_now(nip90.result_template(req, "{}", SCHEMA))
    embedded = Event.from_json(res.first_tag_value("request") or "")
    assert embedded == req and embedded.verify()
