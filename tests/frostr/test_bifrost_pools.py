"""An oa-node holder with peers that refill nonces only below 20 (a bifrost model, see
``bifrost_model.py``), through restarts of the oa-node holder, over a real relay (#17)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.plugins.frostr import encoding, frost
from oa_node.plugins.frostr.holder import FrostHolder, FrostUnavailable
from oa_node.plugins.frostr.noncestore import NonceStoreError, persistent_pools
from oa_node.plugins.frostr.policy import Policy
from tests.frostr.bifrost_model import BifrostModel

from .conftest import running

pytestmark = pytest.mark.anyio



def requester(group: encoding.GroupPackage, share: encoding.SharePackage, url: str,
              state: Path | None) -> FrostHolder:
    pools = (persistent_pools(state, share.secret_bytes, share.public_key)
             if state is not None else None)
    return FrostHolder(group, share, [url], request_timeout=3.0, sign_timeout=10.0,
                       policy=Policy(allow_bare_hashes=True), pools=pools)


async def sign_many(holder: FrostHolder, start: int, count: int, group: Any) -> list[int]:
    """Sign ``count`` messages; the messages ``holder`` sent for each."""
    sent = []
    for i in range(start, start + count):
        msg = hashlib.sha256(b"bifrost-model %d" % i).digest()
        before = holder.stats["sent"]
        result = await holder.sign(msg)
        assert frost.verify_signature(holder.suite, group.group_pk, msg, result.signature)
        sent.append(holder.stats["sent"] - before)
    return sent


async def test_restarted_holder_keeps_signing_with_bifrost_peers(
        relay_url: str, tmp_path: Path) -> None:
    group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3, secret=0x5EED))
    models = [BifrostModel(group, s, relay_url) for s in shares[1:]]
    state = tmp_path / "nonces.sqlite3"
    sent: list[int] = []
    async with running(*models):
        for start in (0, 70, 140):  # two clean restarts of the oa-node holder
            holder = requester(group, shares[0], relay_url, state)
            async with running(holder):
                with anyio.fail_after(120):
                    sent += await sign_many(holder, start, 70 if start < 140 else 60, group)
            assert holder.pools.journal is None  # the nonce file is released on stop
            with pytest.raises(RuntimeError, match="ran already"):  # its pools are no longer
                await holder.run()  # journalled: it must never answer a sign request again
    assert len(sent) == 200
    # One sign request per signature, a ping now and then. The first signature after each
    # start also counts the start-up pings and the answers to the models' pings (4).
    later = [n for i, n in enumerate(sent) if i not in (0, 70, 140)]
    assert max(later) <= 3 and sum(sent) <= 200 + 20, sent
    assert all(m.stats["ignored"] == 0 for m in models)  # never a stale code


async def test_lost_pools_give_a_clear_error_and_few_messages(
        relay_url: str, tmp_path: Path) -> None:
    group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3, secret=0xFACE))
    models = [BifrostModel(group, s, relay_url) for s in shares[1:]]
    async with running(*models):
        holder = requester(group, shares[0], relay_url, tmp_path / "first.sqlite3")
        async with running(holder):
            await sign_many(holder, 0, 3, group)
        # the nonce file is gone: the models still count 40+ nonces in this holder's hands
        fresh = requester(group, shares[0], relay_url, tmp_path / "second.sqlite3")
        fresh.ping_on_start = False
        async with running(fresh):
            with anyio.fail_after(30), pytest.raises(FrostUnavailable) as ei:
                await fresh.sign(hashlib.sha256(b"after loss").digest())
            assert fresh.stats["sent"] <= 4  # at most two pings per peer, no storm
        assert "answered without nonces" in str(ei.value)
        assert "nonce pools lost" in str(ei.value)


async def test_one_process_per_nonce_file(tmp_path: Path) -> None:
    _group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
    path = tmp_path / "n.sqlite3"
    first = persistent_pools(path, shares[0].secret_bytes, shares[0].public_key)
    with pytest.raises(NonceStoreError, match="another process"):
        persistent_pools(path, shares[0].secret_bytes, shares[0].public_key)
    first.journal.close()  # type: ignore[union-attr]
    with pytest.raises(NonceStoreError, match="not of"):
        persistent_pools(path, shares[1].secret_bytes, shares[1].public_key)


def test_journal_survives_and_never_returns_a_used_code(tmp_path: Path) -> None:
    _group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
    path = tmp_path / "n.sqlite3"
    sk, pk = shares[0].secret_bytes, shares[0].public_key
    pools = persistent_pools(path, sk, pk)
    fresh = pools.replenish("peer", 5)
    pools.confirm("peer", [n.code for n in fresh[:3]])
    assert pools.consume_outgoing("peer", fresh[0].code) is not None
    theirs = [protocol_nonce(i) for i in range(4)]
    pools.add_incoming("peer", theirs)
    assert pools.take_incoming("peer") == theirs[0]
    pools.journal.close()  # type: ignore[union-attr]  # no flush, no goodbye: as kill -9
    again = persistent_pools(path, sk, pk)
    assert again.outgoing_count("peer") == 2 and again.pending_count("peer") == 2
    assert again.consume_outgoing("peer", fresh[0].code) is None  # used before the restart
    assert again.consume_outgoing("peer", fresh[1].code) is not None
    assert [again.take_incoming("peer") for _ in range(3)] == theirs[1:]
    assert again.take_incoming("peer") is None
    again.journal.close()  # type: ignore[union-attr]


def protocol_nonce(i: int) -> Any:
    from oa_node.plugins.frostr.protocol import NonceCommit

    return NonceCommit.create(bytes(31) + bytes([i + 1]))
