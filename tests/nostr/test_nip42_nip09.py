"""NIP-42 auth verification and NIP-09 deletion rules."""

from __future__ import annotations

import pytest

from oa_node.nostr import nip09, nip42
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import public_key_hex

ALICE = bytes.fromhex("03" * 32)
BOB = bytes.fromhex("04" * 32)
A_PK = public_key_hex(ALICE)
B_PK = public_key_hex(BOB)
NOW = 1_800_000_000
RELAY = "wss://relay.example.com"


def signed(
    secret: bytes, kind: int, tags: list[list[str]], created_at: int = NOW, content: str = ""
) -> Event:
    return sign_event(EventTemplate(kind, content, tags, created_at), secret)


# --- NIP-42 ----------------------------------------------------------------------------
def auth_event(
    challenge: str = "c-123", relay: str = RELAY, created_at: int = NOW, secret: bytes = ALICE
) -> Event:
    tpl = nip42.auth_template(challenge, relay)
    tpl.created_at = created_at
    return sign_event(tpl, secret)


def test_auth_template_shape() -> None:
    tpl = nip42.auth_template("abc", RELAY)
    assert tpl.kind == 22242
    assert tpl.tags == [["relay", RELAY], ["challenge", "abc"]]


@pytest.mark.parametrize(
    "relay",
    [RELAY, RELAY + "/", "WSS://Relay.Example.COM", "wss://relay.example.com:443/"],
)
def test_auth_accepts_normalised_urls(relay: str) -> None:
    nip42.verify_auth_event(auth_event(relay=relay), "c-123", RELAY, now=NOW)


@pytest.mark.parametrize("skew", [-600, 0, 600])
def test_auth_window_edges(skew: int) -> None:
    nip42.verify_auth_event(auth_event(created_at=NOW + skew), "c-123", RELAY, now=NOW)


def test_auth_default_now_uses_clock() -> None:
    import time

    nip42.verify_auth_event(auth_event(created_at=int(time.time())), "c-123", RELAY)


def _forged_sig() -> Event:
    e = auth_event()
    return Event(e.id, e.pubkey, e.created_at, e.kind, e.tags, e.content, "00" * 64)


@pytest.mark.parametrize(
    ("event", "prefix", "reason"),
    [
        (signed(ALICE, 1, [["relay", RELAY], ["challenge", "c-123"]]), "invalid", "kind"),
        (_forged_sig(), "invalid", "signature"),
        (auth_event(challenge="other"), "auth-required", "challenge"),
        (signed(ALICE, 22242, [["relay", RELAY]]), "auth-required", "challenge"),
        (auth_event(relay="wss://evil.example.com"), "auth-required", "relay"),
        (auth_event(relay="ws://relay.example.com"), "auth-required", "relay"),
        (auth_event(relay="wss://relay.example.com/other"), "auth-required", "relay"),
        (signed(ALICE, 22242, [["challenge", "c-123"]]), "auth-required", "relay"),
        (auth_event(created_at=NOW - 601), "auth-required", "created_at"),
        (auth_event(created_at=NOW + 601), "auth-required", "created_at"),
    ],
)
def test_auth_rejections(event: Event, prefix: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        nip42.verify_auth_event(event, "c-123", RELAY, now=NOW)
    assert exc.value.prefix == prefix
    assert reason in exc.value.reason


def test_normalize_relay_url() -> None:
    n = nip42.normalize_relay_url
    assert n("WSS://Relay.Example.com:443/") == "wss://relay.example.com"
    assert n("ws://127.0.0.1:80") == "ws://127.0.0.1"
    assert n("ws://127.0.0.1:7447/") == "ws://127.0.0.1:7447"
    assert n("ws://[::1]:7447/x/") == "ws://[::1]:7447/x"
    assert n("ws://h/?a=1") == "ws://h?a=1"
    assert n("ws://h:notaport/") == "ws://h:notaport"  # malformed: compared as given


# --- NIP-09 ----------------------------------------------------------------------------
NOTE = signed(ALICE, 1, [], NOW - 100, "oops")
ARTICLE = signed(ALICE, 30023, [["d", "post"]], NOW - 100)
ARTICLE_NEWER = signed(ALICE, 30023, [["d", "post"]], NOW + 100)
PROFILE = signed(ALICE, 0, [], NOW - 100)
BOB_NOTE = signed(BOB, 1, [], NOW - 100)


def deletion(tags: list[list[str]], secret: bytes = ALICE) -> Event:
    return signed(secret, 5, tags)


def test_deletion_targets() -> None:
    d = deletion(
        [
            ["e", NOTE.id],
            ["e", "not-hex"],
            ["a", f"30023:{A_PK}:post"],
            ["a", f"30023:{A_PK}:with:colons"],
            ["a", f"0:{A_PK}:"],
            ["a", f"10002:{A_PK}:ignored-d"],
            ["a", f"30023:{B_PK}:post"],  # someone else's: never a target
            ["a", "garbage"],
            ["a", f"x:{A_PK}:d"],
            ["k", "1"],
            ["e"],
        ]
    )
    ids, addresses = nip09.deletion_targets(d)
    assert ids == {NOTE.id}
    assert addresses == {
        f"30023:{A_PK}:post",
        f"30023:{A_PK}:with:colons",
        f"0:{A_PK}:",
        f"10002:{A_PK}:",
    }
    assert nip09.deletion_targets(NOTE) == (set(), set())


def test_may_delete_by_id() -> None:
    assert nip09.may_delete(deletion([["e", NOTE.id]]), NOTE)
    assert not nip09.may_delete(deletion([["e", BOB_NOTE.id]]), BOB_NOTE)  # other author
    assert not nip09.may_delete(deletion([["e", "00" * 32]]), NOTE)
    assert not nip09.may_delete(NOTE, NOTE)  # not a deletion


def test_may_delete_by_address_respects_created_at() -> None:
    d = deletion([["a", f"30023:{A_PK}:post"]])
    assert nip09.may_delete(d, ARTICLE)
    assert not nip09.may_delete(d, ARTICLE_NEWER)
    same_time = signed(ALICE, 30023, [["d", "post"]], NOW)
    assert nip09.may_delete(d, same_time)
    assert not nip09.may_delete(d, signed(ALICE, 30023, [["d", "other"]], NOW - 1))


def test_may_delete_replaceable_by_address() -> None:
    assert nip09.may_delete(deletion([["a", f"0:{A_PK}:"]]), PROFILE)
    assert not nip09.may_delete(deletion([["a", f"3:{A_PK}:"]]), PROFILE)


def test_deletion_of_deletion_has_no_effect() -> None:
    first = deletion([["e", NOTE.id]])
    assert not nip09.may_delete(deletion([["e", first.id]]), first)


def test_gift_wrap_deletable_by_recipient() -> None:
    wrap = signed(BOB, 1059, [["p", A_PK]])
    assert nip09.may_delete(deletion([["e", wrap.id], ["k", "1059"]]), wrap)
    not_recipient = signed(BOB, 1059, [["p", "cd" * 32]])
    assert not nip09.may_delete(deletion([["e", not_recipient.id]]), not_recipient)
