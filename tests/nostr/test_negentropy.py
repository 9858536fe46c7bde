"""Negentropy v1: byte-identical to the reference implementation, and convergence."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oa_node.nostr.negentropy import (
    MAX_U64,
    Negentropy,
    NegentropyError,
    Storage,
    encode_varint,
    fingerprint,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors/negentropy/negentropy-v1-transcripts.json").read_text()
)


def _storage(items: list[list]) -> Storage:
    return Storage((int(ts), bytes.fromhex(rid)) for ts, rid in items)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_reference_transcript_as_client_and_server(case: dict) -> None:
    """Our client sends and our server answers exactly the reference's bytes, round by round."""
    client = Negentropy(_storage(case["client_items"]), case["frame_size_limit"])
    server = Negentropy(_storage(case["server_items"]), case["frame_size_limit"])
    have: list[bytes] = []
    need: list[bytes] = []
    msg: bytes | None = client.initiate()
    for rnd in case["rounds"]:
        assert msg is not None and msg.hex() == rnd["client"]
        answer, _, _ = server.reconcile(msg)
        assert answer is not None and answer.hex() == rnd["server"]
        msg, h, n = client.reconcile(answer)
        have += h
        need += n
    assert msg is None
    assert sorted(x.hex() for x in have) == case["have"]
    assert sorted(x.hex() for x in need) == case["need"]


def test_varint_and_fingerprint_encoding() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x81\x00"
    assert encode_varint(16384) == b"\x81\x80\x00"
    # Empty set: sha256(32 zero bytes || 0x00)[:16].
    import hashlib

    assert fingerprint(0, 0) == hashlib.sha256(bytes(33)).digest()[:16]
    # The sum wraps mod 2^256.
    assert fingerprint(2**256 + 5, 1) == fingerprint(5, 1)


def test_unknown_protocol_version_gets_our_version_back() -> None:
    """A server asked in a newer version answers with the one byte 0x61 (downgrade)."""
    rid = bytes.fromhex("ee" * 32)
    server = Negentropy(Storage([(12345, rid)]))
    assert server.reconcile(bytes.fromhex("62aabbccddeeff"))[0] == b"\x61"
    expected = server.reconcile(bytes.fromhex("6100000200"))[0]
    assert expected == bytes.fromhex("6100000201") + rid


@pytest.mark.parametrize(
    "hexmsg",
    [
        "",  # no version byte
        "10",  # not a version byte
        "6100",  # bound cut short
        "61000003",  # unknown mode
        "6100000205" + "aa" * 32,  # IdList claims more ids than it carries
        "610000018899",  # fingerprint cut short
        "6100ff" + "00" * 40,  # bound key longer than 32 bytes
        "61" + "ff" * 11,  # varint over 64 bits
        "610501ff00" + "01010000",  # second bound (same time, key 00) below the first (key ff)
    ],
)
def test_hostile_messages_are_refused(hexmsg: str) -> None:
    server = Negentropy(Storage([(1, bytes(32))]))
    with pytest.raises(NegentropyError):
        server.reconcile(bytes.fromhex(hexmsg))


def test_storage_rejects_bad_records() -> None:
    with pytest.raises(ValueError):
        Storage([(MAX_U64, bytes(32))])
    with pytest.raises(ValueError):
        Storage([(1, b"short")])
    assert len(Storage([(1, bytes(32)), (1, bytes(32))])) == 1


def _sync(
    a: set[tuple[int, bytes]], b: set[tuple[int, bytes]], frame: int = 0
) -> tuple[set, set, int, int]:
    client = Negentropy(Storage(a), frame)
    server = Negentropy(Storage(b), frame)
    have: set[bytes] = set()
    need: set[bytes] = set()
    msg: bytes | None = client.initiate()
    rounds = 0
    sent = 0
    while msg is not None:
        if frame:
            assert len(msg) <= frame
        rounds += 1
        assert rounds < 100
        answer = server.reconcile(msg)[0]
        assert answer is not None
        if frame:
            assert len(answer) <= frame
        sent += len(msg) + len(answer)
        msg, h, n = client.reconcile(answer)
        have.update(h)
        need.update(n)
    return have, need, rounds, sent


_record = st.tuples(st.integers(0, 50), st.binary(min_size=32, max_size=32))


@settings(max_examples=40, deadline=None)
@given(
    shared=st.sets(_record, max_size=300),
    only_a=st.sets(_record, max_size=60),
    only_b=st.sets(_record, max_size=60),
    frame=st.sampled_from([0, 4096]),
)
def test_two_random_sets_converge_to_exact_differences(
    shared: set, only_a: set, only_b: set, frame: int
) -> None:
    a = shared | only_a
    b = shared | only_b
    have, need, _, _ = _sync(a, b, frame)
    ids_a = {rid for _, rid in a}
    ids_b = {rid for _, rid in b}
    assert have == ids_a - ids_b
    assert need == ids_b - ids_a


def test_bytes_grow_with_the_difference_not_the_store() -> None:
    rnd = random.Random(7)
    shared = {(rnd.randrange(10**6), rnd.randbytes(32)) for _ in range(20000)}
    extra = {(rnd.randrange(10**6), rnd.randbytes(32)) for _ in range(20)}
    have, need, _, sent = _sync(shared | extra, shared)
    assert have == {rid for _, rid in extra} and not need
    # 20 differing ids in 20k: a few KB, far below the 640 KB of ids.
    assert sent < 20 * 2000
