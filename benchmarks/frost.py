"""FROST signing cost: ``python benchmarks/frost.py [--rounds N] [--sigs N]``.

Prints, in one run on this machine:
- a plain BIP-340 signature (coincurve) and a whole 2-of-3 FROST signature computed in one
  process (nonces, binding factors, both partial signatures, their verification, aggregation
  and the final BIP-340 check), per signature, and their ratio;
- 2-of-3 signing latency over a local relay (a relay subprocess on 127.0.0.1, the two peer
  holders in another subprocess, the requester here), as deployed: Nostr events shown to the
  peers (default policy), nonce pools journalled in SQLite (``synchronous=FULL``). p50/p99,
  beside the relay's plain publish-to-OK round trip and an RPC round trip (a ping: the same
  path, NIP-44 and event signatures included, without FROST) measured in the same run;
- where the time goes: per-signature costs of each part (NIP-44, kind-20000 event signing
  and checking, FROST math on each side, the durable journal writes) measured one by one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from coincurve import PrivateKey

from oa_node.client import RelayPool
from oa_node.nostr import nip44
from oa_node.nostr.event import EventTemplate, serialize_for_id, sign_event
from oa_node.plugins.frostr import encoding, frost, protocol
from oa_node.plugins.frostr.holder import FrostHolder
from oa_node.plugins.frostr.noncestore import persistent_pools
from oa_node.plugins.frostr.policy import Policy, event_from_content
from oa_node.plugins.frostr.protocol import NonceCommit, SignSession
from oa_node.plugins.frostr.suite import BIFROST

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.wait import stop_process


def median_us(fn, rounds: int, inner: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner * 1e6)
    return statistics.median(samples)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def math_bench(rounds: int) -> tuple[float, float]:
    key = PrivateKey()
    msg = secrets.token_bytes(32)
    plain = median_us(lambda: key.sign_schnorr(msg), rounds, 200)
    pkg = frost.dealer_keygen(2, 3)
    signers = pkg.shares[:2]

    def frost_sign() -> None:
        rounds1 = [(s, *frost.commit(BIFROST, s.idx, s.secret)) for s in signers]
        fs = frost.SigningSession(BIFROST, pkg.group_pk, [c for _, _, c in rounds1], msg)
        z = {s.idx: fs.sign(s.idx, s.secret, n) for s, n, _ in rounds1}
        for s in signers:
            assert fs.verify_share(s.idx, s.public, z[s.idx])
        fs.aggregate(z)

    return plain, median_us(frost_sign, rounds, 20)


def start_relay(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oa_node.plugins.relay", "--port", "0", "--db",
         str(tmp / "relay.sqlite3"), "--ready-file", str(ready), "--no-rate-limits"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("relay did not start")
        time.sleep(0.05)
    return proc, f"ws://127.0.0.1:{int(ready.read_text())}"


def holder(group: encoding.GroupPackage, share: encoding.SharePackage, url: str,
           state_dir: Path) -> FrostHolder:
    """A holder as a node runs it: default policy (no rate limit), journalled pools."""
    pools = persistent_pools(state_dir / f"nonces-{share.idx}.sqlite3", share.secret_bytes,
                             share.public_key)
    return FrostHolder(group, share, [url], policy=Policy(rate_per_minute=0), pools=pools,
                       request_timeout=5.0, sign_timeout=10.0)


async def serve_peers(group_text: str, shares: list[str], url: str, state_dir: str) -> None:
    group = encoding.decode_group(group_text)
    async with anyio.create_task_group() as tg:
        for s in shares:
            await tg.start(holder(group, encoding.decode_share(s), url, Path(state_dir)).run)
        print("ready", flush=True)


def serialized_event(group: encoding.GroupPackage, i: int) -> tuple[bytes, bytes]:
    raw = serialize_for_id(group.public_key, 1_700_000_000 + i, 1, [["t", "bench"]],
                           f"benchmark note {i}")
    return raw, hashlib.sha256(raw).digest()


async def network_bench(url: str, group: encoding.GroupPackage, share: encoding.SharePackage,
                        count: int, state_dir: Path) -> tuple[list, list, list]:
    requester = holder(group, share, url, state_dir)
    frost_ms: list[float] = []
    publish_ms: list[float] = []
    ping_ms: list[float] = []
    key = secrets.token_bytes(32)
    async with anyio.create_task_group() as tg:
        await tg.start(requester.run)
        await requester.ping_window(10.0)
        for i in range(10):  # warm-up: nonces traded, connections hot
            raw, digest = serialized_event(group, i)
            await requester.sign(digest, content=raw)
        for i in range(count):
            raw, digest = serialized_event(group, 100 + i)
            t = time.perf_counter()
            await requester.sign(digest, content=raw)
            frost_ms.append((time.perf_counter() - t) * 1000)
        peer = next(iter(requester.peers))
        for _ in range(count):  # the RPC floor: the same path without FROST
            ping_ms.append(await requester.ping(peer) * 1000)
        pool = RelayPool([url])
        for i in range(count):
            ev = sign_event(EventTemplate(kind=1, content=f"floor {i}"), key)
            t = time.perf_counter()
            await pool.publish(ev)
            publish_ms.append((time.perf_counter() - t) * 1000)
        await pool.close()
        tg.cancel_scope.cancel()
    return frost_ms, publish_ms, ping_ms


def split_bench(rounds: int) -> list[tuple[str, float]]:
    """Per-signature CPU cost of each part of a warm 2-of-3 signature (one peer asked), in
    microseconds: what the two relay hops add on top is the rest of the measured p50."""
    group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
    a, b = shares[0], shares[1]
    raw, digest = serialized_event(group, 0)
    conv = nip44.get_conversation_key(a.secret_bytes, b.public_key)
    commit_b = NonceCommit.create(b.secret_bytes)
    own = NonceCommit.create(a.secret_bytes)
    session = SignSession.build(group, [1, 2], digest, 1, {1: own, 2: commit_b}, raw)
    request = protocol.request("sign", session.to_json()).to_json()
    payload = protocol.encrypt_content(request, conv)
    tmpl = EventTemplate(kind=protocol.RPC_KIND, content=payload, tags=[["p", b.public_key]])
    event = sign_event(tmpl, a.secret_bytes)
    nonce_b = protocol.derive_nonce(b.secret_bytes, commit_b.code)
    own_nonce = protocol.derive_nonce(a.secret_bytes, own.code)

    def responder_frost() -> None:
        parsed = SignSession.from_json(json.loads(protocol.parse_envelope(request).params[0]))
        parsed.check_ids(group)
        event_from_content(parsed.content, digest, group.public_key)
        n = protocol.derive_nonce(b.secret_bytes, commit_b.code)
        frost.ser(frost.base_mul(n.binding))
        frost.ser(frost.base_mul(n.hiding))
        fs = frost.SigningSession(BIFROST, group.group_pk, parsed.commitments(), digest)
        fs.sign(2, b.seckey, n)

    fs = frost.SigningSession(BIFROST, group.group_pk, session.commitments(), digest)
    z_b = fs.sign(2, b.seckey, nonce_b)

    def requester_frost() -> None:
        c = NonceCommit.create(a.secret_bytes)
        SignSession.build(group, [1, 2], digest, 1, {1: c, 2: commit_b}, raw).to_json()
        s2 = frost.SigningSession(BIFROST, group.group_pk, session.commitments(), digest)
        assert s2.verify_share(2, group.members[2], z_b)
        z_a = s2.sign(1, a.seckey, own_nonce)
        s2.aggregate({1: z_a, 2: z_b}, group.members)

    with tempfile.TemporaryDirectory() as tmp:
        pools = persistent_pools(Path(tmp) / "n.sqlite3", b.secret_bytes, b.public_key)
        codes = iter([n.code for n in pools.replenish("peer", 100)])
        journal = median_us(lambda: pools.consume_outgoing("peer", next(codes)), 3, 20)
        pools.journal.close()  # type: ignore[union-attr]
    return [
        ("NIP-44 encrypt + decrypt, x2 messages", 2 * (
            median_us(lambda: protocol.encrypt_content(request, conv), rounds, 50)
            + median_us(lambda: protocol.decrypt_content(payload, conv), rounds, 50))),
        ("kind-20000 event sign + check, x2 msgs", 2 * (
            median_us(lambda: sign_event(tmpl, a.secret_bytes), rounds, 50)
            + median_us(event.verify, rounds, 50))),
        ("FROST, responder (parse, checks, z_i)", median_us(responder_frost, rounds, 20)),
        ("FROST, requester (session, verify, agg)", median_us(requester_frost, rounds, 20)),
        ("journal: one durable code delete", journal),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="repetitions for the math medians")
    ap.add_argument("--sigs", type=int, default=200, help="signatures over the relay")
    ap.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:  # the peer-holder subprocess: url, group, shares..., state dir
        url, group_text, *shares, state_dir = args.serve
        anyio.run(serve_peers, group_text, shares, url, state_dir)
        return

    plain, frost_us = math_bench(args.rounds)
    print("FROST math (one process), per signature, median of "
          f"{args.rounds} rounds")
    print(f"  plain BIP-340 sign (coincurve)   {plain:10.1f} us")
    print(f"  FROST 2-of-3, all rounds         {frost_us:10.1f} us")
    print(f"  ratio FROST / plain              {frost_us / plain:10.1f} x")

    group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
    with tempfile.TemporaryDirectory() as tmp:
        relay, url = start_relay(Path(tmp))
        peers = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, group.encode(),
             shares[1].encode(), shares[2].encode(), tmp],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert peers.stdout is not None
            if peers.stdout.readline().strip() != "ready":
                raise SystemExit("peer holders did not start")
            frost_ms, publish_ms, ping_ms = anyio.run(network_bench, url, group, shares[0],
                                                      args.sigs, Path(tmp))
        finally:
            stop_process(peers)
            stop_process(relay)
    p50 = pct(frost_ms, 50)
    print(f"2-of-3 over a local relay, {args.sigs} signatures of events (requester here, "
          "peers in another process, journalled pools)")
    print(f"  FROST sign   p50 {p50:7.2f} ms   p99 {pct(frost_ms, 99):7.2f} ms")
    print(f"  ping RPC     p50 {pct(ping_ms, 50):7.2f} ms   p99 {pct(ping_ms, 99):7.2f} ms"
          "   (same path, no FROST)")
    print(f"  publish->OK  p50 {pct(publish_ms, 50):7.2f} ms   p99 {pct(publish_ms, 99):7.2f} ms"
          "   (one relay hop)")
    print(f"  ratio FROST p50 / publish p50   {p50 / pct(publish_ms, 50):.1f} x")
    print(f"  ratio FROST p50 / plain sign    {p50 * 1000 / plain:.0f} x")
    parts = split_bench(args.rounds)
    ping = pct(ping_ms, 50)
    print("where a signature's time goes (p50 split; CPU parts measured one by one)")
    print(f"  {'RPC round trip (the ping p50 above)':40s} {ping:7.2f} ms  "
          f"{ping * 100 / p50:5.1f} %")
    print("    of which, CPU:")
    for name, us in parts[:2]:
        print(f"      {name:38s} {us / 1000:7.2f} ms  {us / 10 / p50:5.1f} %")
    print(f"      {'relay hops, scheduling (the rest)':38s} "
          f"{ping - sum(us for _, us in parts[:2]) / 1000:7.2f} ms")
    for name, us in parts[2:]:
        print(f"  {name:40s} {us / 1000:7.2f} ms  {us / 10 / p50:5.1f} %")
    rest = p50 - ping - sum(us for _, us in parts[2:]) / 1000
    print(f"  {'unaccounted (noise, extra scheduling)':40s} {rest:7.2f} ms  "
          f"{rest * 100 / p50:5.1f} %")

if __name__ == "__main__":
    main()
