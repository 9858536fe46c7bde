"""FROST signing cost: ``python benchmarks/frost.py [--rounds N] [--sigs N]``.

Prints, in one run on this machine:
- a plain BIP-340 signature (coincurve) and a whole 2-of-3 FROST signature computed in one
  process (nonces, binding factors, both partial signatures, their verification, aggregation
  and the final BIP-340 check), per signature, and their ratio;
- 2-of-3 signing latency over a local relay (a relay subprocess on 127.0.0.1, the two peer
  holders in another subprocess, the requester here): p50/p99, beside the relay's plain
  publish-to-OK round trip as the network floor.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from coincurve import PrivateKey

from oa_node.client import RelayPool
from oa_node.nostr.event import EventTemplate, sign_event
from oa_node.plugins.frostr import encoding, frost
from oa_node.plugins.frostr.holder import FrostHolder
from oa_node.plugins.frostr.policy import Policy
from oa_node.plugins.frostr.suite import BIFROST


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


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)


def holder(group: encoding.GroupPackage, share: encoding.SharePackage, url: str) -> FrostHolder:
    policy = Policy(rate_per_minute=0, allow_bare_hashes=True)
    return FrostHolder(group, share, [url], policy=policy, request_timeout=5.0,
                       sign_timeout=10.0)


async def serve_peers(group_text: str, shares: list[str], url: str) -> None:
    group = encoding.decode_group(group_text)
    async with anyio.create_task_group() as tg:
        for s in shares:
            await tg.start(holder(group, encoding.decode_share(s), url).run)
        print("ready", flush=True)


async def network_bench(url: str, group: encoding.GroupPackage,
                        share: encoding.SharePackage, count: int) -> tuple[list, list]:
    requester = holder(group, share, url)
    frost_ms: list[float] = []
    publish_ms: list[float] = []
    key = secrets.token_bytes(32)
    async with anyio.create_task_group() as tg:
        await tg.start(requester.run)
        await requester.ping_all(5.0)
        for i in range(10):  # warm-up
            await requester.sign(hashlib.sha256(b"warm%d" % i).digest())
        for i in range(count):
            msg = hashlib.sha256(b"bench%d" % i).digest()
            t = time.perf_counter()
            await requester.sign(msg)
            frost_ms.append((time.perf_counter() - t) * 1000)
        pool = RelayPool([url])
        for i in range(count):
            ev = sign_event(EventTemplate(kind=1, content=f"floor {i}"), key)
            t = time.perf_counter()
            await pool.publish(ev)
            publish_ms.append((time.perf_counter() - t) * 1000)
        await pool.close()
        tg.cancel_scope.cancel()
    return frost_ms, publish_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="repetitions for the math medians")
    ap.add_argument("--sigs", type=int, default=200, help="signatures over the relay")
    ap.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:  # the peer-holder subprocess: url, group, shares...
        url, group_text, *shares = args.serve
        anyio.run(serve_peers, group_text, shares, url)
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
             shares[1].encode(), shares[2].encode()],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert peers.stdout is not None
            if peers.stdout.readline().strip() != "ready":
                raise SystemExit("peer holders did not start")
            frost_ms, publish_ms = anyio.run(network_bench, url, group, shares[0], args.sigs)
        finally:
            stop(peers)
            stop(relay)
    print(f"2-of-3 over a local relay, {args.sigs} signatures (requester here, "
          "peers in another process)")
    print(f"  FROST sign   p50 {pct(frost_ms, 50):7.2f} ms   p99 {pct(frost_ms, 99):7.2f} ms")
    print(f"  publish->OK  p50 {pct(publish_ms, 50):7.2f} ms   p99 {pct(publish_ms, 99):7.2f} ms"
          "   (network floor)")
    print(f"  ratio FROST p50 / publish p50   {pct(frost_ms, 50) / pct(publish_ms, 50):.1f} x")
    print(f"  ratio FROST p50 / plain sign    {pct(frost_ms, 50) * 1000 / plain:.0f} x")


if __name__ == "__main__":
    main()
