"""Relay robustness figures (issue 19): fuzzing, 1,000 subscribers, kill -9 during ingest.

    eval "$(bash .ci/services)"; python benchmarks/relay_robustness.py   # full, ~10 min
    python benchmarks/relay_robustness.py --quick          # smaller everything, ~1-2 min
    python benchmarks/relay_robustness.py --frames 200000 --skip-kill ...

Not a CI test: figures, written to benchmarks/results/relay_robustness/<stamp>/results.json
(exit status 1 if the relay died, stopped serving, or lost an acknowledged event).
Every relay is ``python -m oa_node.plugins.relay`` in its own process on 127.0.0.1 with
``max_connections_per_ip = 0`` (no per-IP connection limit: its default, written out so
that 1,000 connections from one address are allowed). The open-file limit is raised to its
hard limit here; the relay inherits it.

1. **Fuzz.** benchmarks/relay_fuzz.py (its own process, ``nice``d so that on a small machine
   it does not take the CPU from the relay and the measured client) sends ``--frames``
   fuzzed and mutated frames over ``--fuzz-conns`` hostile connections, each from its own
   loopback address (127.0.0.2...), reconnecting when the relay closes one. Meanwhile a
   well-behaved client (127.0.0.1) publishes an event and then asks a REQ at a steady rate;
   its OK and REQ->EOSE latency is measured first on the idle relay, then under fuzz, then
   after it. The relay's RSS and CPU are sampled. At the end the relay must still be alive
   and serving (a new connection publishes and reads back an event). This runs against the
   relay's default configuration (per-IP and per-author rate limits on), then again with
   ``--stress-frames`` against a relay with ``--no-rate-limits`` (the worst case: every
   REQ flood is served in full).
2. **Fan-out to 1,000.** ``--fanout-conns`` connections each hold a subscription; one
   publisher sends ``--fanout-events`` at ``--fanout-rate`` per second; latency from publish
   to each subscriber's receipt, and to the last of them per event; the relay's CPU per
   delivery (less sensitive to a shared machine than latency). No rate limits.
   Then ``--non-readers`` connections ask 50 REQs each for ``--big-events`` stored events of
   100 kB and never read: the relay must drop them (its outgoing queue is bounded in size)
   and stay bounded in memory (peak RSS reported).
   And ``--wide-conns`` connections fill all 64 subscription slots with the widest
   filters the limits allow: the relay's memory per such connection, and how many of those
   REQs ``max_connection_filter_values`` refused (with it at 0: ~38 MB per connection,
   ~96 MB before the index was made compact; at its default 10,000: ~2.7 MB).
3. **kill -9 during pipelined ingest.** 16 publishers x 8 events in flight; the relay is
   killed (SIGKILL) once ``N`` events are acknowledged ``OK true`` (``--kill-points``), then
   restarted on the same store, and every acknowledged id is looked up: acked / present /
   lost, on SQLite (WAL, synchronous=NORMAL: a commit survives a process crash) and on
   PostgreSQL (a scratch schema in ``OA_TEST_POSTGRES_DSN``, synchronous_commit on). No rate
   limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from relay import free_port, make_events, wait_port  # noqa: E402  (sibling script)
from relay_loadgen import open_fast, pct  # noqa: E402

from oa_node.nostr.event import EventTemplate, sign_event  # noqa: E402

WORK = HERE / "results" / "relay_robustness"
CONFIG = """[relay.limits]
max_connections_per_ip = 0
created_at_upper_limit = 3600
max_subscriptions = 64
"""


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def _pg(dsn: str, sql: str) -> None:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        await con.execute(sql)
    finally:
        await con.close()


class Relay:
    """One relay process on a SQLite file or a PostgreSQL schema; restartable on it."""

    def __init__(self, work: Path, dsn: str | None = None, rate_limits: bool = False) -> None:
        self.work = work
        self.rate_limits = rate_limits
        self.cfg = work / "relay.toml"
        self.cfg.write_text(CONFIG)
        self.dsn = dsn
        self.schema = ""
        self.db = work / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def start(self) -> str:
        if self.dsn and not self.schema:
            self.schema = "robust_" + uuid.uuid4().hex[:10]
            await _pg(self.dsn, f"CREATE SCHEMA {self.schema}")
        port = free_port()
        args = [sys.executable, "-m", "oa_node.plugins.relay", "--port", str(port),
                "--config", str(self.cfg)]
        if not self.rate_limits:
            args.append("--no-rate-limits")
        if self.dsn:
            sep = "&" if "?" in self.dsn else "?"
            args += ["--postgres", f"{self.dsn}{sep}search_path={self.schema}"]
        else:
            args += ["--db", str(self.db)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(self.work / "relay.log", "ab"))
        await asyncio.to_thread(wait_port, port, self.proc)
        self.url = f"ws://127.0.0.1:{port}"
        return self.url

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_s(self) -> float:
        """User + system CPU seconds the relay process has used (robust to a busy machine)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    async def drop(self) -> None:
        self.stop()
        if self.dsn and self.schema:
            await _pg(self.dsn, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        for p in self.work.glob(self.db.name + "*"):
            p.unlink()


def ms_summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "max_ms": max(ms, default=0.0),
            "n": len(ms)}


# --- a well-behaved client -------------------------------------------------------------


class Client:
    """One FastWS connection answering awaitable requests: OK by event id, EOSE by sub."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[list[Any]]] = {}
        self.events: dict[str, list[str]] = {}
        self.ws: Any = None

    async def open(self, url: str) -> Client:
        self.ws = await open_fast(url, self._on)
        return self

    def _on(self, raw: str) -> None:
        if raw.startswith('["EVENT"'):
            msg = json.loads(raw)
            self.events.setdefault(msg[1], []).append(msg[2]["id"])
            return
        msg = json.loads(raw)
        if msg[0] in ("OK", "EOSE", "CLOSED") and len(msg) > 1:
            fut = self.waiting.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def ask(self, key: str, text: str, timeout: float) -> list[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[key] = fut
        self.ws.send(text)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.waiting.pop(key, None)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


async def steady_client(url: str, rate: float, stop: asyncio.Event, tag: str) -> dict[str, Any]:
    """Publish one event then one REQ (its author, limit 10), ``rate`` times a second."""
    secret = bytes.fromhex("22" * 32)
    c = await Client().open(url)
    ok_ms: list[float] = []
    req_ms: list[float] = []
    timeouts = refused = 0
    i = 0
    period = 1.0 / rate
    next_at = time.perf_counter()
    while not stop.is_set():
        ev = sign_event(EventTemplate(kind=1, content=f"steady {i} {time.time_ns()}",
                                      tags=[["t", tag]]), secret)
        pubkey = ev.pubkey
        t0 = time.perf_counter()
        try:
            msg = await c.ask(ev.id, '["EVENT",' + ev.to_json() + "]", 10)
            ok_ms.append((time.perf_counter() - t0) * 1000)
            refused += msg[2] is not True
            t1 = time.perf_counter()
            sub = f"g{i}"
            await c.ask(sub, json.dumps(["REQ", sub, {"authors": [pubkey], "limit": 10}]), 10)
            req_ms.append((time.perf_counter() - t1) * 1000)
            c.ws.send(json.dumps(["CLOSE", sub]))
        except TimeoutError:
            timeouts += 1
        i += 1
        next_at += period
        delay = next_at - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
        else:
            next_at = time.perf_counter()
    c.close()
    return {"ok": ms_summary(ok_ms), "req": ms_summary(req_ms), "timeouts": timeouts,
            "refused": refused, "rounds": i}


async def still_serves(url: str) -> bool:
    """A new connection publishes an event and reads it back."""
    try:
        c = await asyncio.wait_for(Client().open(url), 10)
        ev = sign_event(EventTemplate(kind=1, content=f"alive {time.time_ns()}"),
                        bytes.fromhex("33" * 32))
        ok = await c.ask(ev.id, '["EVENT",' + ev.to_json() + "]", 10)
        await c.ask("back", json.dumps(["REQ", "back", {"ids": [ev.id]}]), 10)
        c.close()
        return ok[2] is True and c.events.get("back") == [ev.id]
    except (OSError, ConnectionError, TimeoutError):
        return False


# --- 1. fuzz ---------------------------------------------------------------------------


async def fuzz_phase(work: Path, a: argparse.Namespace, frames: int,
                     rate_limits: bool) -> dict[str, Any]:
    relay = Relay(work, rate_limits=rate_limits)
    url = await relay.start()
    rss: list[tuple[float, float]] = []
    t_start = time.perf_counter()
    sampling = True

    async def sample() -> None:
        while sampling:
            rss.append((time.perf_counter() - t_start, relay.rss_mb()))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    out: dict[str, Any] = {"frames_asked": frames, "rate_limits": rate_limits}
    try:
        stop = asyncio.Event()
        idle_task = asyncio.create_task(steady_client(url, a.client_rate, stop, "idle"))
        await asyncio.sleep(a.idle)
        stop.set()
        out["client_idle"] = await idle_task
        rss_before = relay.rss_mb()
        print(f"   idle client: {json.dumps(out['client_idle'])}", flush=True)

        stop = asyncio.Event()
        busy_task = asyncio.create_task(steady_client(url, a.client_rate, stop, "fuzz"))
        t_fuzz = time.perf_counter() - t_start
        cpu0 = relay.cpu_s()
        procs = [
            await asyncio.create_subprocess_exec(
                "nice", "-n", str(a.fuzz_nice),
                sys.executable, str(HERE / "relay_fuzz.py"), "--url", url,
                "--frames", str(frames // a.fuzz_procs), "--conns", str(a.fuzz_conns),
                "--source-ips", str(a.fuzz_conns), "--seed", str(i + 1 + 10 * rate_limits),
                *(["--only", a.fuzz_only] if a.fuzz_only else []),
                stdout=asyncio.subprocess.PIPE)
            for i in range(a.fuzz_procs)
        ]
        outs = [await p.communicate() for p in procs]
        t_fuzz_end = time.perf_counter() - t_start
        out["relay_cpu_s_during_fuzz"] = relay.cpu_s() - cpu0
        stop.set()
        out["client_fuzz"] = await busy_task
        print(f"   client under fuzz: {json.dumps(out['client_fuzz'])}", flush=True)
        fuzz = [json.loads(o[0].decode().strip().splitlines()[-1]) for o in outs]
        out["fuzz"] = merge_fuzz(fuzz)
        stop = asyncio.Event()
        after_task = asyncio.create_task(steady_client(url, a.client_rate, stop, "after"))
        await asyncio.sleep(min(a.idle, 10))
        stop.set()
        out["client_after"] = await after_task
        out["relay_alive"] = relay.alive()
        out["relay_serving"] = await still_serves(url)
        during = [r for t, r in rss if t_fuzz <= t <= t_fuzz_end]
        half = t_fuzz + (t_fuzz_end - t_fuzz) / 2
        out["rss_mb"] = {
            "before_fuzz": rss_before,
            "peak_during_fuzz": max(during, default=float("nan")),
            "peak_first_half": max((r for t, r in rss if t_fuzz <= t <= half), default=0.0),
            "peak_second_half": max((r for t, r in rss if half < t <= t_fuzz_end),
                                    default=0.0),
            "end": relay.rss_mb(),
            "samples": [(round(t, 1), round(r, 1)) for t, r in rss[:: max(1, len(rss) // 200)]],
        }
    finally:
        sampling = False
        await sampler
        out["relay_exit_code_before_stop"] = relay.proc.poll() if relay.proc else None
        await relay.drop()
    return out


def merge_fuzz(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {"frames": sum(p["frames"] for p in parts),
                           "elapsed_s": max(p["elapsed_s"] for p in parts)}
    out["frames_per_s"] = out["frames"] / out["elapsed_s"]
    for key in ("sent_by_category", "answers", "top_reasons", "close_codes"):
        merged: dict[str, int] = {}
        for p in parts:
            for k, v in p[key].items():
                merged[k] = merged.get(k, 0) + v
        out[key] = dict(sorted(merged.items(), key=lambda kv: -kv[1]))
    for key in ("reconnects", "stalled_connections", "closing_frame_left_open",
                "connect_failures"):
        out[key] = sum(p[key] for p in parts)
    return out


# --- 2. fan-out to many subscribers ----------------------------------------------------


async def fanout_phase(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    relay = Relay(work)
    url = await relay.start()
    tag = "oa-robust-fanout"
    secret = bytes.fromhex("44" * 32)
    events = [sign_event(EventTemplate(kind=1, content=f"fan {i} {time.time_ns()}",
                                       tags=[["t", tag]]), secret)
              for i in range(a.fanout_events)]
    sent_at: dict[str, float] = {}
    per_event: dict[str, list[float]] = {}
    deliveries: list[float] = []
    expected = a.fanout_events * a.fanout_conns
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    eose = {"n": 0}
    all_eose = loop.create_future()

    def on_message(raw: str) -> None:
        now = time.perf_counter()
        if raw.startswith('["EVENT"'):
            i = raw.index('"id"')
            j = raw.index('"', raw.index(":", i) + 1) + 1
            eid = raw[j : j + 64]
            t0 = sent_at.get(eid)
            if t0 is not None:
                ms = (now - t0) * 1000
                deliveries.append(ms)
                per_event.setdefault(eid, []).append(ms)
                if len(deliveries) >= expected and not done.done():
                    done.set_result(None)
        elif raw.startswith('["EOSE"'):
            eose["n"] += 1
            if eose["n"] >= a.fanout_conns and not all_eose.done():
                all_eose.set_result(None)

    out: dict[str, Any] = {"connections": a.fanout_conns, "events": a.fanout_events,
                           "rate_per_s": a.fanout_rate}
    subs = []
    try:
        t0 = time.perf_counter()
        for i in range(a.fanout_conns):
            ws = await open_fast(url, on_message)
            ws.send(json.dumps(["REQ", f"s{i}", {"#t": [tag], "limit": 0}]))
            subs.append(ws)
        await asyncio.wait_for(all_eose, 60)
        out["connect_and_subscribe_s"] = time.perf_counter() - t0
        out["rss_mb_subscribed"] = relay.rss_mb()
        pub = await Client().open(url)
        cpu0, own0 = relay.cpu_s(), time.process_time()
        gap = 1.0 / a.fanout_rate
        next_at = time.perf_counter()
        for ev in events:
            sent_at[ev.id] = time.perf_counter()
            pub.ws.send('["EVENT",' + ev.to_json() + "]")
            next_at += gap
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        try:
            await asyncio.wait_for(done, 60)
        except TimeoutError:
            pass
        pub.close()
        relay_cpu, own_cpu = relay.cpu_s() - cpu0, time.process_time() - own0
        out["relay_cpu_us_per_delivery"] = relay_cpu / max(1, len(deliveries)) * 1e6
        out["client_cpu_us_per_delivery"] = own_cpu / max(1, len(deliveries)) * 1e6
        last = [max(v) for v in per_event.values() if len(v) == a.fanout_conns]
        out.update({
            "delivery": ms_summary(deliveries),
            "to_all_subscribers": ms_summary(last),
            "delivered": len(deliveries),
            "expected": expected,
            "rss_mb_end": relay.rss_mb(),
            "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        })
    finally:
        for ws in subs:
            ws.close()
        await relay.drop()
    return out


# --- 2b. clients that never read -------------------------------------------------------


async def non_reader_phase(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Big stored events asked for by connections that never read: the relay must drop them
    (outgoing queue bounded in size) instead of holding every answer."""
    relay = Relay(work)
    cfg = CONFIG + "max_content_length = 200000\n"
    relay.cfg.write_text(cfg)
    url = await relay.start()
    secret = bytes.fromhex("55" * 32)
    out: dict[str, Any] = {"events": a.big_events, "event_kb": 100,
                           "readers": a.non_readers, "reqs_each": 50}
    try:
        pub = await Client().open(url)
        for i in range(a.big_events):
            ev = sign_event(EventTemplate(kind=1, content=f"{i} " + "x" * 100_000,
                                          tags=[["t", "big"]]), secret)
            await pub.ask(ev.id, '["EVENT",' + ev.to_json() + "]", 30)
        out["rss_mb_stored"] = relay.rss_mb()
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        socks = []
        peak = relay.rss_mb()
        for _ in range(a.non_readers):
            _r, w = await asyncio.open_connection(host, int(port))
            w.transport.pause_reading()  # never reads: the relay's answers pile up
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade"
                    b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
            socks.append(w)
        dropped = 0
        for i in range(50):
            for w in socks:
                if w.is_closing():
                    continue
                p = json.dumps(["REQ", f"b{i}", {"#t": ["big"], "limit": 500}]).encode()
                try:
                    w.write(bytes([0x81, 0x80 | len(p)]) + b"\0\0\0\0" + p)  # < 126 bytes
                    await w.drain()
                except (ConnectionError, OSError):
                    w.close()
            await asyncio.sleep(0.1)
            peak = max(peak, relay.rss_mb())
        await asyncio.sleep(2)
        for w in socks:
            # a socket the relay dropped: writing to it fails once the reset is seen
            try:
                w.write(b"\x89\x80\0\0\0\0")  # a ping
                await asyncio.wait_for(w.drain(), 2)
                await asyncio.sleep(0.05)
                w.write(b"\x89\x80\0\0\0\0")
                await asyncio.wait_for(w.drain(), 2)
            except (ConnectionError, OSError, TimeoutError):
                dropped += 1
            w.close()
        out.update({"rss_mb_peak": peak, "rss_mb_end": relay.rss_mb(), "dropped": dropped,
                    "relay_serving": await still_serves(url)})
        pub.close()
    finally:
        await relay.drop()
    return out


async def wide_subscriptions_phase(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Connections that each fill every subscription slot with the widest filters the
    limits allow (3 filters of 1,000 authors: a ~200 kB REQ): what each costs in memory."""
    relay = Relay(work)
    url = await relay.start()
    out: dict[str, Any] = {"connections": a.wide_conns, "subs_each": 64,
                           "values_per_sub": 3000, "rss_mb": [relay.rss_mb()]}
    got = {"n": 0, "refused": 0}

    def on(raw: str) -> None:
        if raw.startswith('["EOSE"') or raw.startswith('["CLOSED"'):
            got["n"] += 1
            if raw.startswith('["CLOSED"'):  # past max_connection_filter_values
                got["refused"] += 1

    wss = []
    try:
        for c in range(a.wide_conns):
            ws = await open_fast(url, on)
            wss.append(ws)
            for k in range(64):
                filters = [{"authors": [os.urandom(32).hex() for _ in range(1000)]}
                           for _ in range(3)]
                ws.send(json.dumps(["REQ", f"w{k}", *filters]))
            deadline = time.monotonic() + 60
            while got["n"] < 64 * (c + 1) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            out["rss_mb"].append(relay.rss_mb())
        rss = out["rss_mb"]
        out["mb_per_connection"] = (rss[-1] - rss[0]) / max(1, a.wide_conns)
        out["refused"] = got["refused"]
        out["relay_serving"] = await still_serves(url)
    finally:
        for ws in wss:
            ws.close()
        await relay.drop()
    return out


# --- 3. kill -9 during pipelined ingest --------------------------------------------------


async def kill_once(work: Path, dsn: str | None, events: list[str], point: int,
                    publishers: int = 16, window: int = 8) -> dict[str, Any]:
    relay = Relay(work, dsn)
    url = await relay.start()
    acked: set[str] = set()
    refused = 0
    state = {"killed_at": None, "sent": 0}
    it = iter(events)
    conns: list[Any] = []
    lost_conn: list[asyncio.Future[None]] = []

    def make(ws_box: list[Any]) -> Any:
        def on_message(raw: str) -> None:
            nonlocal refused
            if not raw.startswith('["OK"'):
                return
            msg = json.loads(raw)
            if msg[2] is True:
                acked.add(msg[1])
            else:
                refused += 1
            if state["killed_at"] is None:
                if len(acked) >= point:
                    state["killed_at"] = len(acked)
                    relay.kill9()
                    return
                ev = next(it, None)
                if ev is not None:
                    state["sent"] += 1
                    ws_box[0].send('["EVENT",' + ev + "]")
        return on_message

    for _ in range(publishers):
        box: list[Any] = [None]
        ws = await open_fast(url, make(box))
        box[0] = ws
        conns.append(ws)
        lost_conn.append(ws.closed)
    t0 = time.perf_counter()
    for ws in conns:
        for _ in range(window):
            ev = next(it, None)
            if ev is not None:
                state["sent"] += 1
                ws.send('["EVENT",' + ev + "]")
    # wait for the kill, then for every socket to report the relay gone (its last OKs read)
    await asyncio.wait_for(asyncio.gather(*lost_conn), 300)
    elapsed = time.perf_counter() - t0
    relay.proc.wait()  # type: ignore[union-attr]
    exit_code = relay.proc.returncode  # type: ignore[union-attr]
    url = await relay.start()
    present: set[str] = set()
    ids = sorted(acked)
    sent_ids = [json.loads(e)["id"] for e in events[: state["sent"]]]
    c = await Client().open(url)
    for k in range(0, len(sent_ids), 500):
        chunk = sent_ids[k : k + 500]
        sub = f"chk{k}"
        await c.ask(sub, json.dumps(["REQ", sub, {"ids": chunk, "limit": 500}]), 60)
        present.update(c.events.pop(sub, []))
        c.ws.send(json.dumps(["CLOSE", sub]))
    c.close()
    await relay.drop()
    lost = [i for i in ids if i not in present]
    return {
        "kill_point": point,
        "acked_when_killed": state["killed_at"],
        "acked": len(acked),
        "present_after_restart": len(present & acked),
        "lost": len(lost),
        "lost_sample": lost[:5],
        "refused": refused,
        "sent": state["sent"],
        "unacked_but_stored": len(present - acked),
        "ingest_s": elapsed,
        "relay_exit_code": exit_code,
    }


async def kill_phase(work: Path, a: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    need = max(a.kill_points) + 16 * 8 + 200
    path = work / "kill-events.jsonl"
    t0 = time.perf_counter()
    await asyncio.to_thread(make_events, path, need, 200)
    print(f"   signed {need} events in {time.perf_counter() - t0:.0f} s", flush=True)
    events = path.read_text().splitlines()
    out: dict[str, Any] = {}
    stores = [("sqlite", None)] + ([("postgres", dsn)] if dsn else [])
    for name, store_dsn in stores:
        rows = []
        for point in a.kill_points:
            r = await kill_once(work, store_dsn, events, point)
            print(f"   {name} kill at {point}: {json.dumps(r)}", flush=True)
            rows.append(r)
        out[name] = rows
    return out


# --- report ----------------------------------------------------------------------------


def fuzz_table(f: dict[str, Any], title: str, conns: int) -> list[str]:
    fz = f["fuzz"]
    ans = fz["answers"]
    lines = [
        f"## fuzz, {title}",
        f"frames sent                {fz['frames']:,} in {fz['elapsed_s']:.0f} s "
        f"({fz['frames_per_s']:,.0f}/s), {len(fz['sent_by_category'])} kinds "
        f"(with mutations), {conns} hostile connections",
        f"relay crashes              {0 if f['relay_alive'] else 1} "
        f"(alive at end: {f['relay_alive']}, serving a new client: {f['relay_serving']})",
        f"relay CPU                  {f['relay_cpu_s_during_fuzz']:.0f} s "
        f"({f['relay_cpu_s_during_fuzz'] / max(1, fz['frames']) * 1e6:.0f} us per frame)",
        f"stalled hostile conns      {fz['stalled_connections']}",
        "relay RSS MB               before {before_fuzz:.0f} / peak {peak_during_fuzz:.0f} "
        "(1st half {peak_first_half:.0f}, 2nd half {peak_second_half:.0f}) / end {end:.0f}"
        .format(**f["rss_mb"]),
        "answers                    " + ", ".join(f"{k} {v:,}" for k, v in ans.items()),
        "connection closes          " + ", ".join(f"{k}: {v:,}" for k, v in
                                                  fz["close_codes"].items())
        + f"; reconnects {fz['reconnects']:,}",
        "",
        "well-behaved client        OK p50 / p99 ms     REQ p50 / p99 ms    timeouts  rounds",
    ]
    for label, key in (("idle relay", "client_idle"), ("under fuzz", "client_fuzz"),
                       ("after fuzz", "client_after")):
        c = f[key]
        lines.append(f"  {label:<24} {c['ok']['p50_ms']:6.1f} / {c['ok']['p99_ms']:6.1f}"
                     f"     {c['req']['p50_ms']:6.1f} / {c['req']['p99_ms']:6.1f}"
                     f"     {c['timeouts']:>5}  {c['rounds']:>6}")
    idle, busy = f["client_idle"], f["client_fuzz"]
    ok_r = busy["ok"]["p99_ms"] / idle["ok"]["p99_ms"]
    req_r = busy["req"]["p99_ms"] / idle["req"]["p99_ms"]
    lines += [f"  ratio fuzz/idle p99        OK {ok_r:.1f}x   REQ {req_r:.1f}x", ""]
    return lines


def table(res: dict[str, Any]) -> str:
    lines: list[str] = []
    for key, title in (("fuzz", "relay defaults: rate limits on, hostile connections from "
                         "their own loopback addresses"),
                       ("fuzz_no_rate_limits", "no rate limits (worst case)")):
        f = res.get(key)
        if f:
            lines += fuzz_table(f, title, res["args"]["fuzz_conns"])
    fo = res.get("fanout")
    if fo:
        lines += [
            "",
            f"## fan-out: {fo['connections']} connections, one subscription each, "
            f"{fo['events']} events at {fo['rate_per_s']}/s",
            f"delivery latency p50 / p99  {fo['delivery']['p50_ms']:.1f} / "
            f"{fo['delivery']['p99_ms']:.1f} ms",
            f"to all subscribers p50/p99  {fo['to_all_subscribers']['p50_ms']:.1f} / "
            f"{fo['to_all_subscribers']['p99_ms']:.1f} ms",
            f"delivered / expected        {fo['delivered']:,} / {fo['expected']:,}",
            f"relay CPU per delivery      {fo['relay_cpu_us_per_delivery']:.1f} us "
            f"(the receiving client: {fo['client_cpu_us_per_delivery']:.1f} us)",
            f"connect+subscribe           {fo['connect_and_subscribe_s']:.1f} s; relay RSS "
            f"{fo['rss_mb_subscribed']:.0f} MB subscribed, {fo['rss_mb_end']:.0f} MB at end",
        ]
    nr = res.get("non_readers")
    if nr:
        lines += [
            "",
            f"## {nr['readers']} connections that never read, {nr['reqs_each']} REQs each for "
            f"{nr['events']} stored events of {nr['event_kb']} kB",
            f"relay RSS MB                {nr['rss_mb_stored']:.0f} stored / peak "
            f"{nr['rss_mb_peak']:.0f} / end {nr['rss_mb_end']:.0f}",
            f"non-readers dropped         {nr['dropped']} of {nr['readers']}; relay serving: "
            f"{nr['relay_serving']}",
        ]
    ws = res.get("wide_subscriptions")
    if ws:
        lines += [
            "",
            f"## {ws['connections']} connections x {ws['subs_each']} subscriptions of "
            f"{ws['values_per_sub']:,} authors each (the limits' widest)",
            "relay RSS MB                " + " -> ".join(f"{r:.0f}" for r in ws["rss_mb"])
            + f" ({ws['mb_per_connection']:.1f} MB per connection); relay serving: "
            f"{ws['relay_serving']}",
            f"REQs refused (CLOSED)       {ws.get('refused', 0)} of "
            f"{ws['connections'] * ws['subs_each']}",
        ]
    k = res.get("kill")
    if k:
        lines += ["", "## kill -9 during pipelined ingest (16 publishers x 8 in flight)",
                  "store     kill after  acked   present  lost  in flight, stored unacked"]
        for store, rows in k.items():
            for r in rows:
                lines.append(f"{store:<9} {r['kill_point']:>10,}  {r['acked']:>6,}  "
                             f"{r['present_after_restart']:>7,}  {r['lost']:>4}  "
                             f"{r['sent'] - r['acked']:>4}, {r['unacked_but_stored']}")
    return "\n".join(lines)


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = WORK / stamp
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"args": vars(a), "nofile": raise_nofile(), "started": stamp}
    t0 = time.perf_counter()
    if not a.skip_fuzz and a.frames:
        print(f"== fuzz: {a.frames:,} frames, relay defaults (rate limits on)", flush=True)
        res["fuzz"] = await fuzz_phase(work, a, a.frames, rate_limits=True)
    if not a.skip_fuzz and a.stress_frames:
        print(f"== fuzz: {a.stress_frames:,} frames, no rate limits", flush=True)
        res["fuzz_no_rate_limits"] = await fuzz_phase(work, a, a.stress_frames,
                                                      rate_limits=False)
    if not a.skip_fanout:
        print(f"== fan-out to {a.fanout_conns} subscribers", flush=True)
        res["fanout"] = await fanout_phase(work, a)
        print(f"   {json.dumps({k: v for k, v in res['fanout'].items()})}", flush=True)
    if not a.skip_fanout and a.non_readers:
        print(f"== {a.non_readers} connections that never read", flush=True)
        res["non_readers"] = await non_reader_phase(work, a)
        print(f"   {json.dumps(res['non_readers'])}", flush=True)
    if not a.skip_fanout and a.wide_conns:
        print(f"== {a.wide_conns} connections with the widest subscriptions", flush=True)
        res["wide_subscriptions"] = await wide_subscriptions_phase(work, a)
        print(f"   {json.dumps(res['wide_subscriptions'])}", flush=True)
    if not a.skip_kill:
        print(f"== kill -9 at {a.kill_points} acknowledged", flush=True)
        res["kill"] = await kill_phase(work, a, a.postgres)
    res["total_s"] = time.perf_counter() - t0
    (work / "results.json").write_text(json.dumps(res, indent=1))
    print("\n" + table(res))
    print(f"\nresults: {work / 'results.json'} ({res['total_s']:.0f} s)")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k frames, 200 subscribers, "
                    "kill points 500/2000, shorter idle phases")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--stress-frames", type=int, default=200_000,
                    help="then this many more against a relay without rate limits (0: skip)")
    ap.add_argument("--fuzz-conns", type=int, default=6, help="hostile connections")
    ap.add_argument("--fuzz-nice", type=int, default=10,
                    help="niceness of the fuzzer process: on a small machine it would otherwise "
                    "take CPU from the relay and the measured client it is meant to attack")
    ap.add_argument("--fuzz-procs", type=int, default=1, help="fuzzer processes")
    ap.add_argument("--fuzz-only", help="only these fuzz categories (comma-separated; "
                    "see CATEGORIES in relay_fuzz.py)")
    ap.add_argument("--client-rate", type=float, default=20.0,
                    help="well-behaved client: publish+REQ rounds per second")
    ap.add_argument("--idle", type=float, default=15.0, help="seconds of idle reference")
    ap.add_argument("--fanout-conns", type=int, default=1000)
    ap.add_argument("--fanout-events", type=int, default=200)
    ap.add_argument("--fanout-rate", type=float, default=20.0)
    ap.add_argument("--non-readers", type=int, default=4,
                    help="connections that ask for big events and never read (0: skip)")
    ap.add_argument("--big-events", type=int, default=300, help="100 kB events they ask for")
    ap.add_argument("--wide-conns", type=int, default=4, help="connections filling every "
                    "subscription slot with 3,000-author filters (0: skip)")
    ap.add_argument("--kill-points", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1000, 5000, 20000])
    ap.add_argument("--postgres", metavar="DSN", default=os.environ.get("OA_TEST_POSTGRES_DSN"),
                    help="also kill -9 on PostgreSQL (default: $OA_TEST_POSTGRES_DSN)")
    ap.add_argument("--skip-fuzz", action="store_true")
    ap.add_argument("--skip-fanout", action="store_true")
    ap.add_argument("--skip-kill", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.frames = min(a.frames, 100_000)
        a.stress_frames = min(a.stress_frames, 50_000)
        a.fanout_conns = min(a.fanout_conns, 200)
        a.fanout_events = min(a.fanout_events, 100)
        a.kill_points = [p for p in a.kill_points if p <= 2000] or [500, 2000]
        if a.kill_points == [1000]:  # the default, cut down
            a.kill_points = [500, 2000]
        a.idle = min(a.idle, 5.0)
    res = asyncio.run(amain(a))
    fuzzes = [res[k] for k in ("fuzz", "fuzz_no_rate_limits") if k in res]
    ok = all(f["relay_alive"] and f["relay_serving"] for f in fuzzes)
    k = res.get("kill", {})
    ok = ok and all(r["lost"] == 0 for rows in k.values() for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
