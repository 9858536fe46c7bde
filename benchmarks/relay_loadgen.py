"""Load generator for benchmarks/relay.py: one process, plain websockets, pre-signed events.

Runs one phase against one relay URL and prints a JSON result line. The same code drives
every relay under test, so the numbers are comparable. Events arrive pre-signed (one JSON
event per line), so signing never counts against a relay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from websockets.asyncio.client import connect

Q = [0.5, 0.99]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "n": len(ms)}


async def open_ws(url: str) -> Any:
    return await connect(url, compression=None, max_size=None, open_timeout=30,
                         ping_interval=None, max_queue=None)


def read_lines(path: str, start: int, count: int) -> list[str]:
    out: list[str] = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if len(out) >= count:
                break
            out.append(line.rstrip("\n"))
    return out


# --- ingest: P publishers, each with a window of unacknowledged events ---------------------


async def ingest(url: str, events: list[str], publishers: int, window: int, cap: float) -> dict:
    shares = [events[i::publishers] for i in range(publishers)]
    latencies: list[float] = []
    failures: list[str] = []
    sent_total = 0
    conns = [await open_ws(url) for _ in range(publishers)]
    deadline = time.perf_counter() + cap

    async def publisher(ws: Any, share: list[str]) -> None:
        nonlocal sent_total
        sent: dict[str, float] = {}
        slots = asyncio.Semaphore(window)
        done = asyncio.Event()
        expected = 0
        finished_sending = False

        async def reader() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] != "OK":
                    continue
                t0 = sent.pop(msg[1], None)
                if t0 is None:
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                if not msg[2]:
                    failures.append(msg[3])
                slots.release()
                if finished_sending and not sent:
                    done.set()
                    return

        rtask = asyncio.create_task(reader())
        for ev in share:
            if time.perf_counter() > deadline:
                break
            await slots.acquire()
            eid = ev[7:71]  # '{"id":"<64 hex>"...' as written by relay.py
            sent[eid] = time.perf_counter()
            await ws.send('["EVENT",' + ev + "]")
            expected += 1
            sent_total += 1
        finished_sending = True
        if sent:
            try:
                await asyncio.wait_for(done.wait(), 60)
            except TimeoutError:
                pass
        rtask.cancel()

    t0 = time.perf_counter()
    await asyncio.gather(*(publisher(ws, share) for ws, share in zip(conns, shares, strict=True)))
    elapsed = time.perf_counter() - t0
    for ws in conns:
        await ws.close()
    ok = len(latencies) - len(failures)
    return {
        "sent": sent_total,
        "ok": ok,
        "failed": len(failures),
        "failure_sample": failures[:3],
        "elapsed_s": elapsed,
        "events_per_s": ok / elapsed if elapsed else 0.0,
        **summary(latencies),
    }


# --- REQ latency: one connection, one REQ at a time, REQ -> EOSE ----------------------------


async def req(url: str, queries: list[dict]) -> dict:
    ws = await open_ws(url)
    per: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        sub = f"q{i}"
        t0 = time.perf_counter()
        await ws.send(json.dumps(["REQ", sub, q["filter"]]))
        n = 0
        while True:
            raw = await asyncio.wait_for(ws.recv(), 60)
            if raw.startswith('["EVENT"'):  # counted without parsing: measure the relay
                n += 1
                continue
            msg = json.loads(raw)
            if msg[0] in ("EOSE", "CLOSED") and msg[1] == sub:
                break
        per.setdefault(q["name"], []).append((time.perf_counter() - t0) * 1000)
        counts.setdefault(q["name"], []).append(n)
        await ws.send(json.dumps(["CLOSE", sub]))
    await ws.close()
    return {
        name: {**summary(ms), "mean_events": statistics.mean(counts[name])}
        for name, ms in per.items()
    }


# --- live fan-out: S subscribers, one publisher, publish -> each subscriber's receipt -------


async def fanout(url: str, events: list[str], subscribers: int, tag: str, gap: float) -> dict:
    subs = [await open_ws(url) for _ in range(subscribers)]
    for i, ws in enumerate(subs):
        await ws.send(json.dumps(["REQ", f"f{i}", {"#t": [tag], "limit": 0}]))
    for ws in subs:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg[0] in ("EOSE", "CLOSED"):
                break
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    expected = len(events) * subscribers
    done = asyncio.Event()

    async def subscriber(ws: Any) -> None:
        async for raw in ws:
            now = time.perf_counter()
            if raw.startswith('["EVENT"'):
                t0 = sent_at.get(_event_id(raw))
                if t0 is not None:
                    latencies.append((now - t0) * 1000)
                    if len(latencies) >= expected:
                        done.set()

    tasks = [asyncio.create_task(subscriber(ws)) for ws in subs]
    pub = await open_ws(url)
    drain = asyncio.create_task(_drain(pub))
    for ev in events:
        sent_at[ev[7:71]] = time.perf_counter()
        await pub.send('["EVENT",' + ev + "]")
        await asyncio.sleep(gap)
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        pass
    for t in [*tasks, drain]:
        t.cancel()
    for ws in [*subs, pub]:
        await ws.close()
    return {**summary(latencies), "delivered": len(latencies), "expected": expected}


def _event_id(raw: str) -> str:
    """The event id in an ``["EVENT", sub, {...}]`` frame, found without a JSON parse."""
    i = raw.index('"id"')
    j = raw.index('"', raw.index(":", i) + 1) + 1
    return raw[j : j + 64]


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["ingest", "req", "fanout"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--events")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--publishers", type=int, default=16)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--cap", type=float, default=120.0, help="stop sending after this long")
    ap.add_argument("--queries")
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--tag", default="fanout")
    ap.add_argument("--gap", type=float, default=0.01)
    a = ap.parse_args()
    if a.phase == "ingest":
        evs = read_lines(a.events, a.start, a.count)
        res = asyncio.run(ingest(a.url, evs, a.publishers, a.window, a.cap))
    elif a.phase == "req":
        with open(a.queries) as f:
            res = asyncio.run(req(a.url, json.load(f)))
    else:
        evs = read_lines(a.events, a.start, a.count)
        res = asyncio.run(fanout(a.url, evs, a.subscribers, a.tag, a.gap))
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
