"""Crypto hot-path benchmark for oa_node.nostr: run ``python benchmarks/crypto.py``.

Prints medians over several repetitions: events signed/s, events verified/s (full
``Event.verify()`` on a typical event: 5 tags, 200-byte content), event ids/s, wire parse +
verify/s, NIP-44 encrypt+decrypt/s at 1 KiB and 64 KiB, and the raw coincurve schnorr
verify rate measured in the same run. The verify/raw ratio target is >= 0.80.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from coincurve import PublicKeyXOnly

from oa_node.nostr import nip44
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import generate_secret_key, public_key_hex


def typical_template(i: int) -> EventTemplate:
    """A job-feedback-like event: 5 tags, 200 bytes of content."""
    return EventTemplate(
        kind=7000,
        content=(f"status update #{i:06d} " + "x" * 200)[:200],
        tags=[
            ["e", f"{i:064x}", "wss://relay.example.com"],
            ["p", "ab" * 32],
            ["status", "processing"],
            ["t", "oa.sandbox_run.v1"],
            ["amount", "21000", "lnbc210n1..."],
        ],
        created_at=1_700_000_000 + i,
    )


def rate(fn: Callable[[], int], reps: int) -> float:
    """Median operations per second of ``fn`` (which returns how many ops it did)."""
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=2000, help="events per repetition")
    ap.add_argument("--authors", type=int, default=50, help="distinct signing keys")
    ap.add_argument("--reps", type=int, default=7, help="repetitions (median reported)")
    args = ap.parse_args()

    secrets_ = [generate_secret_key() for _ in range(args.authors)]
    templates = [typical_template(i) for i in range(args.events)]
    events = [sign_event(t, secrets_[i % len(secrets_)]) for i, t in enumerate(templates)]
    wires = [e.to_json() for e in events]
    raw_inputs = [
        (PublicKeyXOnly(bytes.fromhex(e.pubkey)), bytes.fromhex(e.sig), bytes.fromhex(e.id))
        for e in events
    ]
    assert all(e.verify() for e in events)
    assert all(len(e.tags) == 5 and len(e.content.encode()) == 200 for e in events)

    def do_sign() -> int:
        for i, t in enumerate(templates):
            sign_event(t, secrets_[i % len(secrets_)])
        return len(templates)

    def do_verify() -> int:
        for e in events:
            if not e.verify():
                raise AssertionError("verify failed")
        return len(events)

    def do_raw_verify() -> int:
        for pk, sig, msg in raw_inputs:
            if not pk.verify(sig, msg):
                raise AssertionError("raw verify failed")
        return len(raw_inputs)

    def do_ids() -> int:
        for e in events:
            e.compute_id()
        return len(events)

    def do_parse_verify() -> int:
        for w in wires:
            if not Event.from_json(w).verify():
                raise AssertionError("parse+verify failed")
        return len(wires)

    conv = nip44.get_conversation_key(secrets_[0], public_key_hex(secrets_[1]))

    def nip44_roundtrip(size: int, n: int) -> Callable[[], int]:
        text = "a" * size

        def run() -> int:
            for _ in range(n):
                if nip44.decrypt(nip44.encrypt(text, conv), conv) != text:
                    raise AssertionError("nip44 roundtrip failed")
            return n

        return run

    # Interleave raw and full verification in small batches so both see the same machine
    # conditions (the machine is shared); the ratio is the median over the batch pairs.
    batch = 200
    raw_rates, verify_rates = [], []
    for _ in range(args.reps):
        for start in range(0, len(events), batch):
            ev_batch = events[start : start + batch]
            raw_batch = raw_inputs[start : start + batch]
            t0 = time.perf_counter()
            for pk, sig, msg in raw_batch:
                pk.verify(sig, msg)
            t1 = time.perf_counter()
            for e in ev_batch:
                e.verify()
            t2 = time.perf_counter()
            raw_rates.append(len(raw_batch) / (t1 - t0))
            verify_rates.append(len(ev_batch) / (t2 - t1))
    raw = statistics.median(raw_rates)
    verify = statistics.median(verify_rates)
    ratios = [v / r for v, r in zip(verify_rates, raw_rates, strict=True)]
    assert do_verify() == do_raw_verify() == len(events)

    results = [
        ("events signed/s", rate(do_sign, args.reps)),
        ("events verified/s (Event.verify)", verify),
        ("raw coincurve schnorr verify/s", raw),
        ("event ids/s (compute_id)", rate(do_ids, args.reps)),
        ("wire parse + verify/s", rate(do_parse_verify, args.reps)),
        ("NIP-44 encrypt+decrypt/s, 1 KiB", rate(nip44_roundtrip(1024, 500), args.reps)),
        ("NIP-44 encrypt+decrypt/s, 64 KiB", rate(nip44_roundtrip(65536, 50), args.reps)),
    ]
    print(
        f"oa_node.nostr crypto benchmark: {args.events} events, {args.authors} authors, "
        f"median of {args.reps} repetitions"
    )
    for name, value in results:
        print(f"  {name:<36} {value:>12,.0f}")
    print(
        f"  {'verify / raw ratio (median of pairs)':<36} {statistics.median(ratios):>12.3f}"
        "  (target >= 0.80)"
    )
    print(f"  {'verify / raw ratio (ratio of medians)':<36} {verify / raw:>12.3f}")


if __name__ == "__main__":
    main()
