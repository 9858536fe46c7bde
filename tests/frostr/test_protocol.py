"""The wire format against bifrost's vectors: sessions, ids, nonces, envelopes, NIP-44."""

from __future__ import annotations

import json

import pytest

from oa_node.nostr import nip44
from oa_node.nostr.event import Event
from oa_node.plugins.frostr import encoding, frost, protocol
from oa_node.plugins.frostr.protocol import NoncePools, SignSession, WireError

from .conftest import load_vector

FILES = ["group-2of3.json", "group-3of5.json", "group-2of3-odd-y.json"]


@pytest.mark.parametrize("name", FILES)
def test_sessions_and_ids(name: str) -> None:
    v = load_vector(f"frostr-bifrost/{name}")
    group = encoding.decode_group(v["bfgroup"])
    seckeys = {s["idx"]: bytes.fromhex(s["seckey"]) for s in v["shares"]}
    for entry in v["signing"]:
        raw = entry["session"]
        session = SignSession.from_json(raw)
        session.check_ids(group)
        assert session.to_json() == raw
        # rebuilding from the same inputs gives the same session, byte for byte
        nonces = {}
        for pm in entry["per_member"]:
            code = bytes.fromhex(pm["nonce_code"])
            commit = protocol.NonceCommit.create(seckeys[pm["idx"]], code)
            assert frost.ser(commit.binder_pn).hex() == pm["binder_pn"]
            assert frost.ser(commit.hidden_pn).hex() == pm["hidden_pn"]
            nonces[pm["idx"]] = commit
        rebuilt = SignSession.build(group, entry["members"], bytes.fromhex(entry["message"]),
                                    raw["stamp"], nonces)
        assert rebuilt.to_json() == raw
        tampered = dict(raw, stamp=raw["stamp"] + 1)
        with pytest.raises(WireError, match="session id"):
            SignSession.from_json(tampered).check_ids(group)


def test_member_order_is_lexicographic() -> None:
    assert protocol.session_member_order([2, 10, 1]) == [1, 10, 2]


def test_wire_sign_request() -> None:
    w = load_vector("frostr-bifrost/wire-sign-request.json")
    event = Event.from_dict(w["event"])
    assert event.verify()
    assert event.kind == protocol.RPC_KIND
    assert event.tags == [["p", w["recipient_nostr_pubkey"]]]
    # both sides derive the same conversation key from their share keys
    k_send = nip44.get_conversation_key(bytes.fromhex(w["sender_share_seckey"]),
                                        w["recipient_nostr_pubkey"])
    k_recv = nip44.get_conversation_key(bytes.fromhex(w["recipient_share_seckey"]),
                                        w["sender_nostr_pubkey"])
    assert k_send == k_recv
    plain = protocol.decrypt_content(event.content, k_recv)
    assert plain == w["rpc_request_plaintext"]
    env = protocol.parse_envelope(plain)
    assert env.type == "request" and env.method == "sign" and env.id == w["rpc_request"]["id"]
    assert env.to_json() == w["rpc_request_plaintext"]  # our encoder writes the same bytes
    nonce = bytes.fromhex(w["nip44_nonce"])
    assert protocol.encrypt_content(plain, k_send, nonce) == event.content
    standard = nip44.encrypt(plain, k_send, nonce)  # padded standard base64 is read too
    assert "=" in standard or "+" in standard or "/" in standard
    assert protocol.decrypt_content(standard, k_recv) == plain
    with pytest.raises(WireError):
        protocol.decrypt_content(event.content[:-4] + "AAAA", k_recv)
    group = encoding.decode_group(load_vector("frostr-bifrost/group-2of3.json")["bfgroup"])
    session = SignSession.from_json(json.loads(env.params[0]))
    session.check_ids(group)
    # the example accept reply parses, and its psig verifies in the session
    reply = protocol.parse_envelope(json.dumps(w["example_accept_reply_payload"]))
    resp = protocol.SignResponse.from_json(reply.data)
    assert resp.to_json() == w["example_accept_reply_payload"]["data"]
    fs = frost.SigningSession(frost_suite(), group.group_pk, session.commitments(),
                              bytes.fromhex(session.hashes[0][0]))
    assert fs.verify_share(resp.idx, group.members[resp.idx], resp.psigs[0][1])
    rej = protocol.parse_envelope(json.dumps(w["example_reject_reply_payload"]))
    assert rej.type == "reject" and rej.reason == "some reason"
    assert json.loads(rej.to_json()) == w["example_reject_reply_payload"]


def frost_suite():
    from oa_node.plugins.frostr.suite import BIFROST

    return BIFROST


def test_nonce_pools_single_use() -> None:
    seckey = bytes(31) + b"\x07"
    pools = NoncePools(seckey)
    fresh = pools.replenish("peer", 5)
    assert len(fresh) == 5 and pools.outgoing_count("peer") == 0  # pending
    pools.confirm("peer", [n.code for n in fresh])
    assert pools.outgoing_count("peer") == 5 and pools.pending_count("peer") == 0
    nonce = pools.consume_outgoing("peer", fresh[0].code)
    assert nonce is not None
    assert frost.ser(frost.base_mul(nonce.binding)) == frost.ser(fresh[0].binder_pn)
    assert pools.consume_outgoing("peer", fresh[0].code) is None  # destroyed on first use
    assert pools.consume_outgoing("other", fresh[1].code) is None  # bound to its peer
    big = pools.replenish("peer", 1000)
    assert len(big) == protocol.POOL_SIZE  # one batch is at most a pool
    pools.confirm("peer", [n.code for n in big])
    big += pools.replenish("peer", 1000)  # 2 + 2 pending + 200: the 2 pending go first,
    pools.confirm("peer", [n.code for n in big])  # then the oldest delivered
    assert pools.outgoing_count("peer") == 2 * protocol.POOL_SIZE
    assert pools.consume_outgoing("peer", fresh[1].code) is None
    assert pools.consume_outgoing("peer", fresh[3].code) is None
    pools.add_incoming("peer", fresh[1:3])
    pools.add_incoming("peer", fresh[1:3])  # duplicates ignored
    assert pools.incoming_count("peer") == 2
    assert pools.take_incoming("peer") == fresh[1]


@pytest.mark.parametrize("text", [
    "", "[]", "{}", '{"id":"x","type":"nope"}', '{"id":5,"type":"request"}',
    '{"id":"x","type":"request","method":"sign","params":[1]}', "nan", '"str"',
])
def test_bad_envelopes(text: str) -> None:
    with pytest.raises(WireError):
        protocol.parse_envelope(text)


def test_bad_sessions() -> None:
    v = load_vector("frostr-bifrost/group-2of3.json")
    raw = v["signing"][0]["session"]
    bad = [
        dict(raw, members=[1, 1]),
        dict(raw, hashes=[]),
        dict(raw, hashes=[["zz" * 32]]),
        dict(raw, content="nothex"),
        dict(raw, nonces=raw["nonces"][:1]),
        dict(raw, nonces=[dict(raw["nonces"][0], binder_pn="02" + "ff" * 32), raw["nonces"][1]]),
        dict(raw, stamp=-1),
        dict(raw, gid="00"),
        "not an object",
    ]
    for obj in bad:
        with pytest.raises(WireError):
            SignSession.from_json(obj)
    other = encoding.decode_group(load_vector("frostr-bifrost/group-3of5.json")["bfgroup"])
    same_nsec_other_group = SignSession.from_json(raw)
    with pytest.raises(WireError, match="gid"):
        same_nsec_other_group.check_ids(other)


def test_ping_and_ecdh_payloads() -> None:
    seckey = bytes(31) + b"\x09"
    nonces = [protocol.NonceCommit.create(seckey) for _ in range(3)]
    ping = protocol.Ping(nonces)
    parsed = protocol.Ping.parse_request(json.dumps(ping.request_json()))
    assert parsed.nonces == nonces and parsed.version == 2
    assert protocol.Ping.parse_request("ping").version == 1
    reply = protocol.Ping.parse_reply(ping.reply_json())
    assert reply.policy == {"send": True, "recv": True} and reply.nonces == nonces
    pk = frost.xonly(frost.base_mul(5))
    pkg = protocol.EcdhPackage(1, [1, 2], [(pk, frost.base_mul(7))])
    assert protocol.EcdhPackage.from_json(pkg.to_json()) == pkg
    with pytest.raises(WireError):
        protocol.EcdhPackage.from_json({"idx": 1, "members": [1], "entries": []})


def test_a_refused_batch_goes_with_older_ones_newer_ones_stay() -> None:
    pools = NoncePools(bytes(31) + b"\x09")
    old = [protocol.NonceCommit.create(bytes(31) + bytes([i + 1])) for i in range(3)]
    new = [protocol.NonceCommit.create(bytes(31) + bytes([i + 10])) for i in range(2)]
    pools.add_incoming("peer", old)
    pools.add_incoming("peer", new)
    assert pools.take_incoming("peer") == old[0]  # refused by the peer as unknown:
    assert pools.drop_batches_through("peer", pools.last_taken_batch["peer"]) == 2
    assert [pools.take_incoming("peer") for _ in range(3)] == [*new, None]
