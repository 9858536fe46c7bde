"""Share holders in one process against a real relay subprocess on 127.0.0.1.

(The multi-process tests are in ``test_nodes.py``; these exercise the holder's logic with
direct access to its results.)"""

from __future__ import annotations

import hashlib
import json

import anyio
import pytest
from coincurve import PrivateKey, PublicKeyXOnly

from harness.wait import wait_for
from oa_node.client import RelayPool
from oa_node.nostr import nip44
from oa_node.nostr.event import EventTemplate
from oa_node.plugins.frostr import encoding, frost, protocol
from oa_node.plugins.frostr.holder import FrostHolder, FrostUnavailable, PeerRejected
from oa_node.plugins.frostr.policy import Policy
from oa_node.plugins.frostr.signer import FrostSigner

from .conftest import running

pytestmark = pytest.mark.anyio

NSEC = 0x6C32AB4F47E8846452A2B330ADF5D836C208D3151E3310D53ED58B9D2D7142D9


class CheatingHolder(FrostHolder):
    """A deliberately misbehaving peer: its partial signatures are off by one."""

    def sign_share(self, fs: frost.SigningSession, nonce: frost.Nonce) -> int:
        return (super().sign_share(fs, nonce) + 1) % frost.N


def make_group(k: int, n: int, secret: int = NSEC):
    return encoding.from_dealer(frost.dealer_keygen(k, n, secret=secret))



def holders(group, shares, url, cls=FrostHolder, **kw):
    """Holders that sign bare hashes: these tests exercise the signing machinery (what a
    default holder refuses is in ``test_sign_policy.py``)."""
    return [cls(group, s, [url], request_timeout=3.0, sign_timeout=8.0,
                policy=Policy(allow_bare_hashes=True), **kw) for s in shares]


async def test_sign_2_of_3_and_group_key_is_the_npub(relay_url: str) -> None:
    group, shares = make_group(2, 3)
    npub = PrivateKey(frost.scalar_bytes(NSEC)).public_key_xonly.format().hex()
    assert group.public_key == npub
    hs = holders(group, shares, relay_url)
    async with running(*hs):
        signer = FrostSigner(hs[0])
        event = await signer.sign(EventTemplate(kind=1, content="hello from 2-of-3"))
        assert event.pubkey == npub and event.verify()
        assert PublicKeyXOnly(bytes.fromhex(npub)).verify(bytes.fromhex(event.sig),
                                                         bytes.fromhex(event.id))
        assert signer.last_result is not None and len(signer.last_result.signers) == 2
        # signing again uses fresh nonces from the pools
        again = await signer.sign(EventTemplate(kind=1, content="again"))
        assert again.verify()


async def test_sign_3_of_5_with_two_offline(relay_url: str) -> None:
    group, shares = make_group(3, 5, secret=12345)
    hs = holders(group, shares[:3], relay_url)  # members 4 and 5 are offline
    async with running(*hs):
        result = await hs[0].sign(hashlib.sha256(b"m").digest())
        assert result.signers == [1, 2, 3]
        assert frost.verify_signature(hs[0].suite, group.group_pk,
                                      hashlib.sha256(b"m").digest(), result.signature)


async def test_cheater_identified_and_signing_completes(relay_url: str) -> None:
    group, shares = make_group(2, 3)
    honest = holders(group, [shares[0], shares[2]], relay_url, ping_on_start=False)
    cheat = holders(group, [shares[1]], relay_url, cls=CheatingHolder, ping_on_start=False)[0]
    async with running(*honest, cheat):
        requester = honest[0]
        await requester.ping(cheat.pubkey)  # only the cheater's nonces at first
        msg = hashlib.sha256(b"cheat").digest()
        result = await requester.sign(msg)
        assert result.cheaters == [2]
        assert result.signers == [1, 3]
        assert frost.verify_signature(requester.suite, group.group_pk, msg, result.signature)
        assert 2 in requester.cheaters  # left out of later sessions
        assert (await requester.sign(hashlib.sha256(b"next").digest())).signers == [1, 3]


async def test_fewer_than_k_is_a_clear_timeout(relay_url: str) -> None:
    group, shares = make_group(3, 3, secret=777)
    hs = holders(group, shares[:2], relay_url)
    async with running(*hs):
        hs[0].sign_timeout = 3.0
        with anyio.fail_after(15):
            with pytest.raises(FrostUnavailable, match=r"could not gather 3 of 3.*member 3"):
                await hs[0].sign(bytes(32))


async def test_replayed_request_is_refused(relay_url: str) -> None:
    group, shares = make_group(2, 2, secret=4242)
    a, b = holders(group, shares, relay_url)
    sent: list[str] = []
    async with running(a, b):
        watcher = RelayPool([relay_url])
        try:
            flt = {"authors": [a.pubkey], "kinds": [protocol.RPC_KIND]}
            async with watcher.subscribe(flt) as sub:
                await sub.wait_eose(5)
                await a.sign(hashlib.sha256(b"once").digest())
                key = nip44.get_conversation_key(shares[1].secret_bytes, a.pubkey)
                with anyio.move_on_after(5):
                    async for _url, ev in sub:
                        env = protocol.parse_envelope(protocol.decrypt_content(ev.content, key))
                        if env.type == "request" and env.method == "sign":
                            sent.append(env.params[0])
                            break
        finally:
            await watcher.close()
        assert sent, "the sign request was seen on the relay"
        with pytest.raises(PeerRejected, match="already used nonce"):
            await a.request(b.pubkey, "sign", sent[0])
        assert b.stats["rejected"] == 1


async def test_policy_refuses_with_reject_envelope(relay_url: str) -> None:
    group, shares = make_group(2, 2, secret=999)
    a = FrostHolder(group, shares[0], [relay_url], request_timeout=3.0, sign_timeout=4.0)
    b = FrostHolder(group, shares[1], [relay_url], request_timeout=3.0,
                    policy=Policy(allowed_kinds=frozenset({1})))
    async with running(a, b):
        signer = FrostSigner(a)
        assert (await signer.sign(EventTemplate(kind=1, content="ok"))).verify()
        with pytest.raises(FrostUnavailable, match="kind 4 is not allowed"):
            await signer.sign(EventTemplate(kind=4, content="no"))
        with pytest.raises(FrostUnavailable, match="send the event"):
            await a.sign(hashlib.sha256(b"bare sighash").digest())
        # content that does not hash to the sighash is refused, too
        with pytest.raises(FrostUnavailable, match="does not hash"):
            await a.sign(hashlib.sha256(b"x").digest(), content=b"[0]")


async def test_threshold_ecdh_nip44(relay_url: str) -> None:
    group, shares = make_group(2, 3)
    hs = holders(group, shares, relay_url)
    peer = PrivateKey(bytes.fromhex(
        "5c91e4c4768da65f1c32436403f1359436f4abea14f0aff83f80bb8e1a4ba4b8"))
    peer_pub = peer.public_key_xonly.format().hex()
    async with running(*hs):
        signer = FrostSigner(hs[1])
        shared = await hs[1].ecdh(peer_pub)
        plain = frost.mul(frost.lift_x(bytes.fromhex(peer_pub)), NSEC)
        assert shared == frost.xonly(plain)
        # a message to the group's npub decrypts through threshold ECDH, and back
        to_group = nip44.encrypt("secret for the group",
                                 nip44.get_conversation_key(peer.secret, group.public_key))
        assert await signer.nip44_decrypt(peer_pub, to_group) == "secret for the group"
        reply = await signer.nip44_encrypt(peer_pub, "hi back")
        key = nip44.get_conversation_key(peer.secret, group.public_key)
        assert nip44.decrypt(reply, key) == "hi back"


async def test_ecdh_cache_is_bounded(relay_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from oa_node.plugins.frostr import asking as holder_mod

    monkeypatch.setattr(holder_mod, "ECDH_CACHE_MAX", 2)
    group, shares = make_group(2, 2, secret=NSEC)
    a, b = holders(group, shares, relay_url)
    peers = [PrivateKey().public_key_xonly.format().hex() for _ in range(3)]
    async with running(a, b):
        for pk in peers:
            assert await a.ecdh(pk) == frost.xonly(frost.mul(frost.lift_x(bytes.fromhex(pk)),
                                                             NSEC))
        assert list(a._ecdh_cache) == peers[1:]  # the least recently used one went
        await a.ecdh(peers[1])  # a hit makes it the most recent
        assert list(a._ecdh_cache) == [peers[2], peers[1]]


async def test_bad_messages_do_not_stop_the_holder(relay_url: str) -> None:
    group, shares = make_group(2, 2, secret=31337)
    a, b = holders(group, shares, relay_url)
    async with running(a, b):
        deep = "[" * 20_000  # json.loads raises RecursionError, not ValueError, on this
        for junk in ("not json", json.dumps({"id": "x", "type": "request", "method": "nope",
                                             "params": [""]}), deep,
                     json.dumps({"id": "y", "type": "request", "method": "sign",
                                 "params": [deep]})):
            ev_key = nip44.get_conversation_key(shares[0].secret_bytes, b.pubkey)
            content = protocol.encrypt_content(junk, ev_key)
            from oa_node.nostr.event import sign_event

            ev = sign_event(EventTemplate(kind=protocol.RPC_KIND, content=content,
                                          tags=[["p", b.pubkey]]), shares[0].secret_bytes)
            await a._pool.publish(ev)  # type: ignore[union-attr]
        with pytest.raises(PeerRejected, match="not supported"):
            await a.request(b.pubkey, "bogus", "")
        assert b.stats["dropped"] == 2  # "not json" and the nested envelope
        assert b.stats["rejected"] == 3  # "nope", the nested sign session and "bogus"
        assert (await a.sign(hashlib.sha256(b"still fine").digest())).signature


async def test_nonce_pools_refill_over_many_signatures(relay_url: str) -> None:
    """More signatures than one pool holds, after a peer's first ping went unanswered."""
    group, shares = make_group(2, 2, secret=2024)
    # a short request timeout only for b's startup ping; a's signing round trips get a
    # deadline a loaded machine meets (one slow round trip of 120 would fail the test)
    a = FrostHolder(group, shares[0], [relay_url], request_timeout=10.0, sign_timeout=30.0)
    b = FrostHolder(group, shares[1], [relay_url], request_timeout=1.0, sign_timeout=8.0,
                    policy=Policy(rate_per_minute=0, allow_bare_hashes=True))
    async with running(b):
        # b's startup ping to a times out (a is not running): a never got those nonces,
        # and b discards them
        peer = next(iter(b.peers))
        await wait_for(lambda: b.pools.pending_count(peer) > 0, 10, "b's startup ping")
        await wait_for(lambda: b.pools.pending_count(peer) == 0, 10, "b's ping to time out")
        b.request_timeout = 10.0  # its answers' publishes from here on
        async with running(a):
            for i in range(protocol.POOL_SIZE + 20):
                result = await a.sign(hashlib.sha256(b"n%d" % i).digest())
                assert result.signers == [1, 2]
