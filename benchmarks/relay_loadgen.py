"""Load generator for benchmarks/relay.py: one process, plain websockets, pre-signed events.

Runs one phase against one relay URL and prints a JSON result line. The same code drives
every relay under test, so the numbers are comparable. Events arrive pre-signed (one JSON
event per line), so signing never counts against a relay.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import statistics
import sys
import time
from typing import Any

Q = [0.5, 0.99]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "n": len(ms)}


class RawWS(asyncio.Protocol):
    """A raw websocket client connection (RFC 6455 by hand): the HTTP 101 answer, then frames.

    Reads the handshake answer off ``buf`` and settles ``handshaken`` (failed on a non-101
    answer or a close before it); after that every ``data_received`` hands the buffer to
    ``frames_received``, which the subclass writes (FastWS here, relay_fuzz.py's Link).
    """

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.handshaken: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.handshaken.done():
            self.handshaken.set_exception(ConnectionError("closed during handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.handshaken.set_exception(ConnectionError(head[:200].decode()))
                return
            self.handshaken.set_result(None)
        self.frames_received(buf)

    def frames_received(self, buf: bytearray) -> None:
        """Parse (and remove) the whole frames at the front of ``buf``."""
        raise NotImplementedError


class FastWS(RawWS):
    """A minimal websocket client (RFC 6455) for load generation.

    A full client library spends ~50 us per received frame in Python (a task switch and
    an await per message), which would make the generator, not the relay, the bottleneck
    when 100 subscribers each receive every event. This one parses frames straight from
    ``data_received`` and hands text messages to a callback. Client frames carry a zero
    mask key (allowed by the RFC's framing, fine for a benchmark on 127.0.0.1).
    """

    def __init__(self, on_message: Any) -> None:
        super().__init__()
        self.on_message = on_message
        self.fragments: list[bytes] = []

    def frames_received(self, buf: bytearray) -> None:
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = int.from_bytes(buf[2:4], "big")
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = int.from_bytes(buf[2:10], "big")
                pos = 10
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])
            del buf[: pos + n]
            opcode = b0 & 0x0F
            if opcode in (1, 0):
                self.fragments.append(payload)
                if b0 & 0x80:
                    text = b"".join(self.fragments).decode()
                    self.fragments.clear()
                    self.on_message(text)
            elif opcode == 9:
                self._frame(0xA, payload)
            elif opcode == 8 and self.transport is not None:
                self.transport.close()

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        assert self.transport is not None
        self.transport.write(head + b"\x00\x00\x00\x00" + payload)

    def send(self, text: str) -> None:
        self._frame(1, text.encode())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_fast(url: str, on_message: Any) -> FastWS:
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: FastWS(on_message), host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    assert proto.transport is not None
    proto.transport.write(
        f"GET / HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await asyncio.wait_for(proto.handshaken, 30)
    return proto


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
    deadline = time.perf_counter() + cap
    loop = asyncio.get_running_loop()

    urls = url.split(",")  # several relay instances: publishers go round-robin

    async def publisher(share: list[str], url: str) -> None:
        nonlocal sent_total
        sent: dict[str, float] = {}
        it = iter(share)
        done = loop.create_future()
        state = {"sending": True}

        def send_next(ws: FastWS) -> None:
            if time.perf_counter() > deadline:
                state["sending"] = False
                return
            ev = next(it, None)
            if ev is None:
                state["sending"] = False
                return
            sent[ev[7:71]] = time.perf_counter()  # '{"id":"<64 hex>"' as relay.py writes
            ws.send('["EVENT",' + ev + "]")

        def on_message(raw: str) -> None:
            nonlocal sent_total
            if not raw.startswith('["OK"'):
                return
            msg = json.loads(raw)
            t0 = sent.pop(msg[1], None)
            if t0 is None:
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            sent_total += 1
            if not msg[2]:
                failures.append(msg[3])
            send_next(ws)
            if not state["sending"] and not sent and not done.done():
                done.set_result(None)

        ws = await open_fast(url, on_message)
        await start.wait()
        for _ in range(window):
            send_next(ws)
        if not sent:
            done.set_result(None)
        try:
            await asyncio.wait_for(done, cap + 60)
        except TimeoutError:
            pass
        ws.close()

    start = asyncio.Event()
    tasks = [asyncio.create_task(publisher(share, urls[i % len(urls)]))
             for i, share in enumerate(shares)]
    await asyncio.sleep(0.5)  # all connected
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
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
    per: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    loop = asyncio.get_running_loop()
    cur: dict[str, Any] = {}

    def on_message(raw: str) -> None:
        if raw.startswith('["EVENT"'):  # counted without parsing: measure the relay
            cur["n"] += 1
            return
        msg = json.loads(raw)
        if msg[0] in ("EOSE", "CLOSED") and msg[1] == cur.get("sub"):
            cur["done"].set_result(time.perf_counter())

    ws = await open_fast(url, on_message)
    for i, q in enumerate(queries):
        sub = f"q{i}"
        cur.update(sub=sub, n=0, done=loop.create_future())
        t0 = time.perf_counter()
        ws.send(json.dumps(["REQ", sub, q["filter"]]))
        t1 = await asyncio.wait_for(cur["done"], 60)
        per.setdefault(q["name"], []).append((t1 - t0) * 1000)
        counts.setdefault(q["name"], []).append(cur["n"])
        ws.send(json.dumps(["CLOSE", sub]))
    ws.close()
    return {
        name: {**summary(ms), "mean_events": statistics.mean(counts[name])}
        for name, ms in per.items()
    }


# --- live fan-out: S subscribers, one publisher, publish -> each subscriber's receipt -------


async def fanout(url: str, events: list[str], subscribers: int, tag: str, rate: float) -> dict:
    """One publisher sends ``events`` at ``rate`` events/s on a fixed schedule (event i at
    start + i/rate, so a late wake-up does not lower the rate); each subscriber's receipt
    of each event is one latency sample."""
    loop = asyncio.get_running_loop()
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    expected = len(events) * subscribers
    done = loop.create_future()
    eose = {"n": 0, "all": loop.create_future()}

    def on_message(raw: str) -> None:
        now = time.perf_counter()
        if raw.startswith('["EVENT"'):
            t0 = sent_at.get(_event_id(raw))
            if t0 is not None:
                latencies.append((now - t0) * 1000)
                if len(latencies) >= expected and not done.done():
                    done.set_result(None)
        elif raw.startswith('["EOSE"') or raw.startswith('["CLOSED"'):
            eose["n"] += 1
            if eose["n"] >= subscribers:
                eose["all"].set_result(None)

    subs = [await open_fast(url, on_message) for _ in range(subscribers)]
    for i, ws in enumerate(subs):
        ws.send(json.dumps(["REQ", f"f{i}", {"#t": [tag], "limit": 0}]))
    await asyncio.wait_for(eose["all"], 30)
    pub = await open_fast(url, lambda raw: None)
    start = time.perf_counter()
    for i, ev in enumerate(events):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[ev[7:71]] = time.perf_counter()
        pub.send('["EVENT",' + ev + "]")
    sending = time.perf_counter() - start
    try:
        await asyncio.wait_for(done, 30)
    except TimeoutError:
        pass
    for ws in [*subs, pub]:
        ws.close()
    achieved = (len(events) - 1) / sending if len(events) > 1 and sending > 0 else 0.0
    return {**summary(latencies), "delivered": len(latencies), "expected": expected,
            "rate_per_s": rate, "achieved_rate_per_s": achieved}


def _event_id(raw: str) -> str:
    """The event id in an ``["EVENT", sub, {...}]`` frame, found without a JSON parse."""
    i = raw.index('"id"')
    j = raw.index('"', raw.index(":", i) + 1) + 1
    return raw[j : j + 64]


def quiet_gc() -> None:
    """Freeze what is loaded (modules, events, queries) before timing: the generator's own
    full collections would otherwise walk it all and show up as the relay's latency."""
    gc.collect()
    gc.freeze()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["ingest", "req", "fanout"])
    ap.add_argument("--url", required=True,
                    help="relay URL (ingest: several, comma-separated, shared by publishers)")
    ap.add_argument("--events")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--publishers", type=int, default=16)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--cap", type=float, default=120.0, help="stop sending after this long")
    ap.add_argument("--queries")
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--tag", default="fanout")
    ap.add_argument("--rate", type=float, default=200.0, help="fan-out events/s published")
    a = ap.parse_args()
    if a.phase == "ingest":
        evs = read_lines(a.events, a.start, a.count)
        quiet_gc()
        res = asyncio.run(ingest(a.url, evs, a.publishers, a.window, a.cap))
    elif a.phase == "req":
        with open(a.queries) as f:
            queries = json.load(f)
        quiet_gc()
        res = asyncio.run(req(a.url, queries))
    else:
        evs = read_lines(a.events, a.start, a.count)
        quiet_gc()
        res = asyncio.run(fanout(a.url, evs, a.subscribers, a.tag, a.rate))
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
