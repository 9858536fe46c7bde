"""NIP-57 pure rules: zap request validation (Appendix D + limits) and receipt validation."""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import pytest

from oa_node.nostr import nip57
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import public_key_hex
from oa_node.plugins.ledger_wallet.invoices import issue_invoice

SENDER = secrets.token_bytes(32)
RECIPIENT = secrets.token_bytes(32)
SERVER = secrets.token_bytes(32)  # the LNURL server's nostrPubkey key
NODE = secrets.token_bytes(32)  # the lightning node key signing invoices
TARGET = "e1" * 32


def request(amount: int = 21000, **overrides: object) -> Event:
    t = nip57.zap_request_template(public_key_hex(RECIPIENT), amount, ["ws://127.0.0.1:1"],
                                   content="gm", event_id=TARGET, kind=1)
    for k, v in overrides.items():
        setattr(t, k, v)
    return sign_event(t, SENDER)


def check(ev: Event | str, amount: int = 21000, **kw: object) -> Event:
    raw = ev if isinstance(ev, str) else ev.to_json()
    return nip57.validate_zap_request(raw, amount_msat=amount,
                                      recipient_pubkey=public_key_hex(RECIPIENT), **kw)


def test_valid_request_passes() -> None:
    ev = request()
    assert check(ev).id == ev.id
    assert nip57.zap_request_relays(ev) == ["ws://127.0.0.1:1"]


def _retag(tags: list[list[str]]) -> Event:
    return sign_event(EventTemplate(kind=9734, content="", tags=tags), SENDER)


P = ["p", public_key_hex(RECIPIENT)]
R = ["relays", "ws://127.0.0.1:1"]


@pytest.mark.parametrize(("tags", "why"), [
    ([], "no tags"),
    ([R], "exactly one p"),
    ([R, P, P], "exactly one p"),
    ([R, ["p"]], "exactly one p"),
    ([R, ["p", "ab" * 32]], "LNURL user"),
    ([R, P, ["e", "aa" * 32], ["e", "bb" * 32]], "at most one e"),
    ([R, P, ["e", "nothex"]], "not an event id"),
    ([P], "relays"),
    ([["relays"], P], "relays"),
    ([["relays", "https://x"], P], "ws://"),
    ([R, P, ["amount", "1000"]], "amount"),
    ([R, P, ["a", "not-a-coordinate"]], "coordinate"),
    ([R, P, ["a", "\u00b2:" + "aa" * 32 + ":d"]], "coordinate"),  # isdigit() but not int()
    ([R, P, ["a", "9" * 5000 + ":" + "aa" * 32 + ":d"]], "coordinate"),
    ([R, P, ["a", "65536:" + "aa" * 32 + ":d"]], "coordinate"),
    ([R, P, ["P", "aa" * 32], ["P", "bb" * 32]], "at most one P"),
    ([["relays", *[f"ws://127.0.0.1:{i}" for i in range(1, 20)]], P], "more than"),
])
def test_each_appendix_d_rule(tags: list[list[str]], why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        check(_retag(tags))


def test_bad_signature_and_kind_and_json() -> None:
    ev = request()
    forged = json.loads(ev.to_json())
    forged["content"] = "changed"
    with pytest.raises(ProtocolError, match="signature"):
        check(json.dumps(forged))
    with pytest.raises(ProtocolError, match="kind"):
        check(sign_event(EventTemplate(kind=1, content="", tags=[R, P]), SENDER))
    for junk in ("", "{", "[]", "null", '{"kind": 9734}'):
        with pytest.raises(ProtocolError):
            check(junk)


def test_limits_size_skew_comment() -> None:
    old = request(created_at=int(time.time()) - 3600)
    with pytest.raises(ProtocolError, match="created_at"):
        check(old)
    with pytest.raises(ProtocolError, match="comment"):
        check(request(content="x" * 1000))
    with pytest.raises(ProtocolError, match="larger"):
        check(request().to_json() + " " * 9000)


def test_big_p_must_equal_receipt_pubkey() -> None:
    ev = _retag([R, P, ["P", "aa" * 32]])
    with pytest.raises(ProtocolError, match="P tag"):
        check(ev, receipt_pubkey=public_key_hex(SERVER))
    assert check(_retag([R, P, ["P", public_key_hex(SERVER)]]),
                 receipt_pubkey=public_key_hex(SERVER))
    # the sender's own key (what the receipt's P will be) is accepted too; none is required
    assert check(_retag([R, P, ["P", public_key_hex(SENDER)]]),
                 receipt_pubkey=public_key_hex(SERVER))
    assert check(_retag([R, P]), receipt_pubkey=public_key_hex(SERVER))


def test_description_hash_uses_bytes_as_received() -> None:
    ev = request()
    spaced = json.dumps(ev.to_dict(), indent=1)  # same event, different bytes
    assert check(spaced).id == ev.id
    assert nip57.description_hash(spaced) != nip57.description_hash(ev.to_json())
    assert nip57.description_hash(spaced) == hashlib.sha256(spaced.encode()).hexdigest()


# --- receipts ---------------------------------------------------------------------------------


def make_receipt(nostr_param: str | None = None, amount: int = 21000, *, signer: bytes = SERVER,
                 desc_hash: str | None = None, preimage: bool = True,
                 edit: object = None) -> Event:
    nostr_param = nostr_param or request(amount).to_json()
    issued = issue_invoice(NODE, amount,
                           description_hash=desc_hash or nip57.description_hash(nostr_param))
    t = nip57.receipt_template(nostr_param, issued.bolt11, paid_at=int(time.time()),
                               preimage=issued.preimage if preimage else None)
    if callable(edit):
        edit(t)
    return sign_event(t, signer)


def validate(receipt: Event, **kw: object) -> nip57.Zap:
    args = {"nostr_pubkey": public_key_hex(SERVER), "recipient": public_key_hex(RECIPIENT),
            "event_id": TARGET}
    args.update(kw)
    return nip57.validate_receipt(receipt, **args)  # type: ignore[arg-type]


def test_valid_receipt() -> None:
    zap = validate(make_receipt(), amount_msat=21000)
    assert zap.amount_msat == 21000 and zap.sender == public_key_hex(SENDER)
    assert zap.recipient == public_key_hex(RECIPIENT) and zap.event_id == TARGET
    assert zap.comment == "gm"


def test_forged_receipt_wrong_key() -> None:
    with pytest.raises(ProtocolError, match="nostrPubkey"):
        validate(make_receipt(signer=secrets.token_bytes(32)))


def test_forged_receipt_wrong_amount() -> None:
    # request says 21000 msat, invoice is for 1000 msat
    param = request(21000).to_json()
    with pytest.raises(ProtocolError, match="amount"):
        validate(make_receipt(param, amount=1000))
    # a consistent receipt, but not the amount the caller is counting
    with pytest.raises(ProtocolError, match="expected"):
        validate(make_receipt(), amount_msat=5000)


def test_forged_receipt_wrong_description_hash() -> None:
    with pytest.raises(ProtocolError, match="description hash"):
        validate(make_receipt(desc_hash="00" * 32))

    def swap_description(t: EventTemplate) -> None:
        other = request(content="another").to_json()
        t.tags = [x if x[0] != "description" else ["description", other] for x in t.tags]

    with pytest.raises(ProtocolError, match="description hash"):
        validate(make_receipt(edit=swap_description))


def test_forged_receipt_other_checks() -> None:
    def two_p(t: EventTemplate) -> None:
        t.tags.append(["p", "ab" * 32])

    def other_e(t: EventTemplate) -> None:
        t.tags = [x if x[0] != "e" else ["e", "ff" * 32] for x in t.tags]

    def wrong_sender(t: EventTemplate) -> None:
        t.tags = [x if x[0] != "P" else ["P", "ab" * 32] for x in t.tags]

    def bad_preimage(t: EventTemplate) -> None:
        t.tags = [x if x[0] != "preimage" else ["preimage", "00" * 32] for x in t.tags]

    for edit, why in ((two_p, "one p"), (other_e, "e tag"), (wrong_sender, "P tag"),
                      (bad_preimage, "preimage")):
        with pytest.raises(ProtocolError, match=why):
            validate(make_receipt(edit=edit))
    # Appendix F: a request naming another lnurl is a receipt for another address
    ours = nip57.lnurl_encode("https://example.com/.well-known/lnurlp/alice")
    theirs = nip57.lnurl_encode("https://example.com/.well-known/lnurlp/mallory")
    tagged = make_receipt(sign_event(nip57.zap_request_template(
        public_key_hex(RECIPIENT), 21000, ["ws://127.0.0.1:1"], event_id=TARGET,
        lnurl=theirs), SENDER).to_json())
    with pytest.raises(ProtocolError, match="lnurl"):
        validate(tagged, lnurl=ours)
    assert validate(tagged, lnurl=theirs.lower())  # bech32 is case-insensitive
    assert validate(tagged, lnurl="https://example.com/.well-known/lnurlp/mallory")
    assert validate(tagged)  # no lnurl given: not checked
    untagged = make_receipt()
    assert validate(untagged, lnurl=ours)  # no lnurl tag in the request: nothing to check
    with pytest.raises(ProtocolError, match="target"):
        validate(make_receipt(), event_id="cd" * 32)
    with pytest.raises(ProtocolError, match="someone else"):
        validate(make_receipt(), recipient="ab" * 32)
    tampered = make_receipt()
    tampered.content = "x"
    with pytest.raises(ProtocolError, match="signature"):
        validate(tampered)


def test_receipt_request_id_picks_our_own() -> None:
    req = request()
    assert nip57.receipt_request_id(make_receipt(req.to_json())) == req.id

    def garble(t: EventTemplate) -> None:
        t.tags = [x if x[0] != "description" else ["description", "[" * 5000] for x in t.tags]

    assert nip57.receipt_request_id(make_receipt(edit=garble)) is None


def test_lnurl_and_lud16() -> None:
    url = "http://127.0.0.1:8080/.well-known/lnurlp/alice"
    assert nip57.lnurl_decode(nip57.lnurl_encode(url)) == url
    assert nip57.lud16_url("alice@127.0.0.1:8080") == url
    assert nip57.lud16_url("Bob@example.com") == "https://example.com/.well-known/lnurlp/bob"
    for bad in ("alice", "@x", "a@", "a/b@x", "a@x/y"):
        with pytest.raises(ProtocolError):
            nip57.lud16_url(bad)
    with pytest.raises(ProtocolError):
        nip57.lnurl_decode("npub1xyz")
