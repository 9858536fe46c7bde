"""Relay benchmark: oa-node's Nexus relay vs PyPI ``nostr-relay``, side by side, one run.

    python benchmarks/relay.py            # full run (100k-event store), a few minutes
    python benchmarks/relay.py --quick    # smaller store, for a smoke check
    python benchmarks/relay.py --ceiling  # also the in-memory ceiling (relay_ceiling.py)
    python benchmarks/relay.py --ceiling --skip-reference --ingest-only --rounds 5
                                          # ingest only, medians of 5 interleaved rounds
    python benchmarks/relay.py --before REV ...  # also oa-node as of git REV (before/after)

Everything on 127.0.0.1. Each relay runs in its own process; a separate load-generator
process (benchmarks/relay_loadgen.py) drives the same phases against each one:
sequential ingest (one publisher that waits for each OK before its next EVENT) and
pipelined ingest (16 concurrent publishers, 8 events in flight each), both as events/s
and OK latency; then filling the store to the target size, REQ latency (one client, one
REQ at a time; by author; kind + tag; recent, all limit 100; ``--queries`` of each), live
fan-out latency to 100 subscribers of events published at 200 ev/s, and the relay's peak
RSS. Events are signed before any timing. With ``--ceiling`` each ingest
figure is also given as a ratio to the in-memory ceiling measured in the same run.
``--rounds N`` repeats the two ingest phases N times on a fresh store per relay
(relays interleaved, order alternating) and reports medians. oa-node's SQLite store runs
WAL with ``synchronous=NORMAL``: ``OK true`` follows the commit, which survives a crash of
the relay process; an OS crash or power loss may lose the last commits.
``nostr-relay`` is installed into its own virtualenv under benchmarks/.venvs/ on first use.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "relay"
REF_VENV = HERE / ".venvs" / "nostr-relay"
LOADGEN = HERE / "relay_loadgen.py"
SCHEMAS = [f"oa.bench_{i}.v1" for i in range(5)]
FANOUT_TAG = "oa-bench-fanout"
#: Fan-out phase: events published at this rate to this many subscribers.
FANOUT_RATE = 200
FANOUT_SUBSCRIBERS = 100
FANOUT_EVENTS = 400


# --- data: pre-signed events -----------------------------------------------------------------


def _sign_chunk(args: tuple[int, int, int, int]) -> list[str]:
    from oa_node.nostr.event import EventTemplate, sign_event

    seed, start, count, authors = args
    rng = random.Random(seed + start)
    keys = [_key(i) for i in range(authors)]
    now = int(time.time())
    out = []
    for i in range(start, start + count):
        secret, _ = keys[i % authors]
        r = rng.random()
        peer = keys[rng.randrange(authors)][1]
        if r < 0.6:
            kind, tags = 1, [["t", rng.choice(["news", "ai", "nostr", "jobs"])]]
        elif r < 0.8:
            kind, tags = 5050, [["t", rng.choice(SCHEMAS)], ["param", "schema", "x"]]
        elif r < 0.9:
            kind, tags = 7000, [["p", peer], ["e", f"{i:064x}"], ["status", "processing"]]
        else:
            kind, tags = 6050, [["p", peer], ["e", f"{i:064x}"]]
        created = now - rng.randrange(0, 2 * 86400)
        content = f"event {i} " + "x" * rng.randrange(20, 200)
        ev = sign_event(EventTemplate(kind=kind, content=content, tags=tags, created_at=created),
                        secret)
        out.append(ev.to_json())
    return out


def _key(i: int) -> tuple[bytes, str]:
    from hashlib import sha256

    from oa_node.nostr.keys import public_key_hex

    secret = sha256(f"oa-bench-author-{i}".encode()).digest()
    return secret, public_key_hex(secret)


def make_events(path: Path, total: int, authors: int) -> None:
    chunk = 2000
    jobs = [(1, s, min(chunk, total - s), authors) for s in range(0, total, chunk)]
    with multiprocessing.Pool(max(1, os.cpu_count() or 1)) as pool, path.open("w") as f:
        for lines in pool.imap(_sign_chunk, jobs):
            f.write("\n".join(lines) + "\n")


def make_fanout_events(path: Path, count: int) -> None:
    from oa_node.nostr.event import EventTemplate, sign_event

    secret, _ = _key(999_999)
    with path.open("w") as f:
        for i in range(count):
            ev = sign_event(EventTemplate(kind=5050, content=f"job {i} {time.time_ns()}",
                                          tags=[["t", FANOUT_TAG]]), secret)
            f.write(ev.to_json() + "\n")


def make_queries(path: Path, authors: int, n: int) -> None:
    rng = random.Random(7)
    qs: list[dict[str, Any]] = []
    for _ in range(n):
        qs.append({"name": "by author", "filter": {"authors": [_key(rng.randrange(authors))[1]],
                                                   "limit": 100}})
        qs.append({"name": "kind+tag", "filter": {"kinds": [5050], "#t": [rng.choice(SCHEMAS)],
                                                  "limit": 100}})
        qs.append({"name": "recent", "filter": {"kinds": [1], "limit": 100}})
    rng.shuffle(qs)
    path.write_text(json.dumps(qs))


# --- relays under test -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"relay exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


def ensure_reference() -> Path:
    exe = REF_VENV / "bin" / "nostr-relay"
    if not exe.exists():
        print("installing nostr-relay into", REF_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        subprocess.run([str(REF_VENV / "bin" / "pip"), "install", "-q", "nostr-relay"],
                       check=True)
    return exe


class Target:
    name: str
    proc: subprocess.Popen

    def start(self) -> str: ...

    def pids(self) -> list[int]:
        """The relay process and its children (gunicorn workers)."""
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                    todo.extend(int(k) for k in kids)
            except OSError:
                pass
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the relay process and its children."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total / tick

    def peak_rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


#: Runs the relay from a source tree of another revision (``--before``): its packages are
#: loaded under the installed names before anything imports them.
_LAUNCH_TREE = """
import importlib.util, sys
root = sys.argv[1]
for name, sub in (("oa_node", "oa_node"), ("oa_node.plugins", "plugins"),
                  ("oa_node.executors", "executors"), ("oa_node.sandbox", "sandbox")):
    path = f"{root}/{sub}"
    spec = importlib.util.spec_from_file_location(
        name, f"{path}/__init__.py", submodule_search_locations=[path])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
from oa_node.plugins.relay.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def checkout_tree(rev: str, dest: Path) -> Path:
    """The installed packages' sources as of git ``rev``, extracted under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "oa_node",
                              "plugins", "executors", "sandbox"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def short_rev(rev: str) -> str:
    out = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", rev],
                         capture_output=True, text=True)
    return out.stdout.strip() or rev[:10]


class Nexus(Target):
    def __init__(self, workdir: Path, postgres: str | None = None, tree: Path | None = None,
                 label: str = "") -> None:
        self.name = "oa-node (postgres)" if postgres else "oa-node (sqlite)"
        if label:
            self.name = f"oa-node@{label} (sqlite)"
        self.workdir = workdir
        self.postgres = postgres
        self.tree = tree
        self.round = 0
        self.schema = ""

    def start(self) -> str:
        port = free_port()
        cfg = self.workdir / "nexus.toml"
        cfg.write_text("[relay.limits]\nmax_subscriptions = 200\ncreated_at_upper_limit = 3600\n")
        launch = ["-c", _LAUNCH_TREE, str(self.tree)] if self.tree else ["-m",
                                                                      "oa_node.plugins.relay"]
        args = [sys.executable, *launch, "--port", str(port), "--no-rate-limits",
                "--config", str(cfg)]
        if self.postgres:  # a fresh schema per start, dropped at stop (a scratch database)
            self.schema = f"bench_{os.getpid()}_{id(self):x}_{self.round}"
            self.round += 1
            _pg_execute(self.postgres, f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in self.postgres else "?"
            args += ["--postgres", f"{self.postgres}{sep}search_path={self.schema}"]
        else:  # a fresh file per start: every ingest round begins on an empty store
            self.round += 1
            tag = f"{id(self):x}-{self.round}"
            args += ["--db", str(self.workdir / f"nexus-{tag}.sqlite3")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_port(port, self.proc)
        return f"ws://127.0.0.1:{port}"

    def stop(self) -> None:
        super().stop()
        if self.postgres and self.schema:
            _pg_execute(self.postgres, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            self.schema = ""
        for p in self.workdir.glob(f"nexus-{id(self):x}-*.sqlite3*"):
            p.unlink()


def _pg_execute(dsn: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        con = await asyncpg.connect(dsn)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    asyncio.run(run())


class CeilingRelay(Target):
    """benchmarks/relay_ceiling.py: verify, keep in memory, answer, push (a ceiling)."""

    def __init__(self) -> None:
        self.name = "ceiling (in-memory)"

    def start(self) -> str:
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(HERE / "relay_ceiling.py"), str(port)],
                                     stdout=subprocess.DEVNULL)
        wait_port(port, self.proc)
        return f"ws://127.0.0.1:{port}"


class NostrRelay(Target):
    def __init__(self, workdir: Path) -> None:
        self.name = "nostr-relay 1.14 (PyPI)"
        self.workdir = workdir

    def start(self) -> str:
        exe = ensure_reference()
        port = free_port()
        cfg = self.workdir / "nostr-relay.yaml"
        db = self.workdir / "nostr-relay.sqlite3"
        cfg.write_text(
            "DEBUG: false\nrelay_name: reference\n"
            f"storage:\n  sqlalchemy.url: sqlite+aiosqlite:///{db}\n"
            "  num_concurrent_reqs: 10\n  num_concurrent_adds: 2\n"
            "  validators:\n    - nostr_relay.validators.is_signed\n"
            "    - nostr_relay.validators.is_recent\n"
            f"gunicorn:\n  bind: 127.0.0.1:{port}\n  workers: 1\n  loglevel: warning\n"
            "  reload: false\n"
            "authentication:\n  enabled: false\n"
            "message_timeout: 1800\nsubscription_limit: 200\nmax_limit: 6000\n"
            "logging:\n  version: 1\n  disable_existing_loggers: true\n"
        )
        self.proc = subprocess.Popen([str(exe), "-c", str(cfg), "serve"], cwd=self.workdir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port, self.proc)
        time.sleep(1.0)  # gunicorn's worker binds after the master
        return f"ws://127.0.0.1:{port}"


# --- driving the load generator --------------------------------------------------------------


def loadgen(*args: str, timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(LOADGEN), *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest_phases(t: Target, url: str, events: str, seq_n: int, pipe_n: int,
                  cap: float) -> dict:
    """Sequential ingest (1 publisher, 1 in flight) of the first ``seq_n`` events, then
    pipelined ingest (16 publishers, 8 in flight each) of the next ``pipe_n``. Each also
    reports the relay's CPU time per accepted event (``cpu_us_per_event``), a figure
    that other load on a shared machine disturbs much less than events/s."""
    out = {}
    for phase, start, n, pubs, window in (("seq", 0, seq_n, 1, 1),
                                          ("pipe", seq_n, pipe_n, 16, 8)):
        cpu0 = t.cpu_seconds()
        res = loadgen("ingest", "--url", url, "--events", events, "--start", str(start),
                      "--count", str(n), "--publishers", str(pubs), "--window", str(window),
                      "--cap", str(cap))
        res["cpu_us_per_event"] = (t.cpu_seconds() - cpu0) / max(1, res["ok"]) * 1e6
        out[phase] = res
    return out


def run_target(t: Target, data: Path, store_size: int, seq_n: int, pipe_n: int, cap: float,
               ingest_only: bool = False) -> dict:
    url = t.start()
    print(f"\n== {t.name} at {url}", flush=True)
    res: dict[str, Any] = {"name": t.name}
    try:
        events = str(data / "events.jsonl")
        phases = ingest_phases(t, url, events, seq_n, pipe_n, cap)
        res["ingest_seq"], res["ingest"] = phases["seq"], phases["pipe"]
        print("   ingest sequential", json.dumps(res["ingest_seq"]), flush=True)
        print("   ingest pipelined ", json.dumps(res["ingest"]), flush=True)
        if ingest_only:
            return res
        done = seq_n + pipe_n
        t0 = time.perf_counter()
        fill = loadgen("ingest", "--url", url, "--events", events, "--start", str(done),
                       "--count", str(store_size - done), "--publishers", "16",
                       "--window", "32", "--cap", "1200", timeout=1500)
        res["fill"] = fill
        stored = res["ingest_seq"]["ok"] + res["ingest"]["ok"] + fill["ok"]
        res["stored"] = stored
        print(f"   filled to {stored} events in {time.perf_counter() - t0:.0f} s "
              f"({fill['events_per_s']:.0f}/s)", flush=True)
        res["req"] = loadgen("req", "--url", url, "--queries", str(data / "queries.json"))
        print("   req", json.dumps(res["req"]), flush=True)
        res["fanout"] = loadgen("fanout", "--url", url, "--events", str(data / "fanout.jsonl"),
                                "--count", str(FANOUT_EVENTS), "--subscribers",
                                str(FANOUT_SUBSCRIBERS), "--tag", FANOUT_TAG,
                                "--rate", str(FANOUT_RATE))
        print("   fanout", json.dumps(res["fanout"]), flush=True)
        res["rss_mb"] = t.peak_rss_mb()
    finally:
        t.stop()
    return res


def ingest_rounds(targets: list[Target], results: list[dict], data: Path, rounds: int,
                  seq_n: int, pipe_n: int, cap: float) -> None:
    """Rounds 2..N of the ingest phases, each on a fresh relay and store, relays
    interleaved with the order alternating; medians over all rounds go into each result
    (``ingest_seq`` / ``ingest``), every round's figures into ``rounds``."""
    for r in results:
        r["rounds"] = [{"seq": r["ingest_seq"], "pipe": r["ingest"]}]
    for i in range(1, rounds):
        pairs = list(zip(targets, results, strict=True))
        for t, r in pairs if i % 2 == 0 else pairs[::-1]:
            url = t.start()
            try:
                got = ingest_phases(t, url, str(data / "events.jsonl"), seq_n, pipe_n, cap)
            finally:
                t.stop()
            r["rounds"].append(got)
            print(f"round {i + 1} {t.name:26} sequential {got['seq']['events_per_s']:6.0f}/s "
                  f"({got['seq']['cpu_us_per_event']:4.0f} us CPU/ev)  pipelined "
                  f"{got['pipe']['events_per_s']:6.0f}/s "
                  f"({got['pipe']['cpu_us_per_event']:4.0f} us CPU/ev)", flush=True)
    for r in results:
        for phase, key in (("seq", "ingest_seq"), ("pipe", "ingest")):
            runs = [x[phase] for x in r["rounds"]]
            r[key] = {**r[key], **{k: statistics.median(x[k] for x in runs)
                                   for k in ("events_per_s", "p50_ms", "p99_ms",
                                             "cpu_us_per_event")}}


def add_ratios(results: list[dict]) -> dict | None:
    """Each relay's ingest events/s over the ceiling's (``ratio_to_ceiling``)."""
    top = next((r for r in results if r["name"].startswith("ceiling")), None)
    if top is None:
        return None
    for r in results:
        r["ratio_to_ceiling"] = {
            phase: (r[key]["events_per_s"] / top[key]["events_per_s"]
                    if top[key]["events_per_s"] else float("nan"))
            for phase, key in (("seq", "ingest_seq"), ("pipe", "ingest"))
        }
    return top


def table(results: list[dict]) -> str:
    def f(v: float, digits: int = 1) -> str:
        return f"{v:,.{digits}f}"

    rows = [("metric", *[r["name"] for r in results])]
    for key, label in (("ingest_seq", "ingest events/s sequential (1 publisher)"),
                       ("ingest", "ingest events/s pipelined (16 publishers)")):
        rows.append((label, *[f(r[key]["events_per_s"], 0) for r in results]))
        if "ratio_to_ceiling" in results[0]:
            phase = "seq" if key == "ingest_seq" else "pipe"
            rows.append(("  ratio to ceiling",
                         *[f"{r['ratio_to_ceiling'][phase]:.2f}x" for r in results]))
        rows.append(("  OK latency p50 / p99 ms",
                     *[f"{f(r[key]['p50_ms'])} / {f(r[key]['p99_ms'])}" for r in results]))
        rows.append(("  relay CPU us per event",
                     *[f(r[key]["cpu_us_per_event"], 0) for r in results]))
        rows.append(("  accepted / sent",
                     *[f"{r[key]['ok']} / {r[key]['sent']}" for r in results]))
    if "fill" not in results[0]:
        return _render(rows)
    rows.append(("store size (events)", *[str(r["stored"]) for r in results]))
    for q in ("by author", "kind+tag", "recent"):
        rows.append((f"REQ {q} (limit 100) p50 / p99 ms",
                     *[f"{f(r['req'][q]['p50_ms'])} / {f(r['req'][q]['p99_ms'])}"
                       for r in results]))
    rows.append((f"fan-out to {FANOUT_SUBSCRIBERS} subs at {FANOUT_RATE} ev/s p50 / p99 ms",
                 *[f"{f(r['fanout']['p50_ms'])} / {f(r['fanout']['p99_ms'])}" for r in results]))
    rows.append(("  publish rate achieved ev/s",
                 *[f(r["fanout"].get("achieved_rate_per_s", 0), 0) for r in results]))
    rows.append(("  delivered / expected",
                 *[f"{r['fanout']['delivered']} / {r['fanout']['expected']}" for r in results]))
    rows.append(("peak RSS MB", *[f(r["rss_mb"]) for r in results]))
    return _render(rows)


def _render(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k-event store instead of 100k")
    ap.add_argument("--store-size", type=int)
    ap.add_argument("--ingest", type=int, default=20000,
                    help="events in the timed pipelined ingest")
    ap.add_argument("--seq", type=int, default=3000, help="events in the sequential ingest")
    ap.add_argument("--cap", type=float, default=60.0, help="max seconds per ingest phase")
    ap.add_argument("--rounds", type=int, default=1,
                    help="ingest rounds per relay (fresh store each; medians reported)")
    ap.add_argument("--ingest-only", action="store_true",
                    help="only the two ingest phases (no fill, REQ, fan-out, RSS)")
    ap.add_argument("--postgres", metavar="DSN", default=os.environ.get("OA_BENCH_POSTGRES_DSN"),
                    help="also run oa-node on PostgreSQL (a scratch database)")
    ap.add_argument("--before", metavar="REV",
                    help="also oa-node (sqlite) as of git REV: before/after in one run")
    ap.add_argument("--queries", type=int, default=500,
                    help="REQs per query type (p99 of 100 would be the single slowest)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--ceiling", action="store_true",
                    help="also the in-memory ceiling relay (benchmarks/relay_ceiling.py)")
    a = ap.parse_args()
    store_size = a.store_size or (20000 if a.quick else 100_000)
    seq_n = min(a.seq, store_size // 4)
    pipe_n = min(a.ingest, store_size - seq_n)
    authors = 1000
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = WORK / stamp
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total = seq_n + pipe_n if a.ingest_only else store_size
    print(f"signing {total} events ({authors} authors) ...", flush=True)
    make_events(work / "events.jsonl", total, authors)
    make_fanout_events(work / "fanout.jsonl", FANOUT_EVENTS)
    make_queries(work / "queries.json", authors, a.queries)
    print(f"signed in {time.perf_counter() - t0:.0f} s (not part of any measurement)")

    targets: list[Target] = [Nexus(work)]
    if a.before:
        tree = checkout_tree(a.before, work / "before")
        targets.append(Nexus(work, tree=tree, label=short_rev(a.before)))
    if a.postgres:
        targets.append(Nexus(work, a.postgres))
    if a.ceiling:
        targets.append(CeilingRelay())
    if not a.skip_reference:
        targets.append(NostrRelay(work))
    results = [run_target(t, work, store_size, seq_n, pipe_n, a.cap, a.ingest_only)
               for t in targets]
    if a.rounds > 1:
        ingest_rounds(targets, results, work, a.rounds, seq_n, pipe_n, a.cap)
    top = add_ratios(results)
    (work / "results.json").write_text(json.dumps(results, indent=1))

    if a.rounds > 1:
        print(f"\ningest: medians of {a.rounds} rounds")
    print("\n" + table(results))
    ours = results[0]
    if not a.ingest_only:
        print(f"\ntargets: ingest >= 3,000 events/s: {ours['ingest']['events_per_s']:,.0f}; "
              f"REQ p99 <= 5 ms (worst type): "
              f"{max(ours['req'][q]['p99_ms'] for q in ours['req']):.1f}; fan-out p99 <= 10 ms"
              f" at {FANOUT_RATE} ev/s: {ours['fanout']['p99_ms']:.1f}; peak RSS <= 150 MB: "
              f"{ours['rss_mb']:.0f}")
    ref = next((r for r in results if r["name"].startswith("nostr-relay")), None)
    if ref and ref["ingest"]["events_per_s"]:
        ratio = ours["ingest"]["events_per_s"] / ref["ingest"]["events_per_s"]
        print(f"ingest ratio oa-node / nostr-relay: {ratio:.1f}x (target >= 5x)")
        for q in ours.get("req", {}):
            r = ref["req"][q]["p50_ms"] / ours["req"][q]["p50_ms"]
            print(f"REQ {q} p50 speed-up vs nostr-relay: {r:.1f}x")
    if top is not None:
        for r in results:
            if r is not top:
                rt = r["ratio_to_ceiling"]
                print(f"ingest ratio {r['name']} / ceiling: sequential {rt['seq']:.2f}x, "
                      f"pipelined {rt['pipe']:.2f}x (target >= 0.8x)")
    pg = next((r for r in results if r["name"] == "oa-node (postgres)"), None)
    if pg is not None:
        print("oa-node postgres / sqlite: ingest sequential "
              f"{pg['ingest_seq']['events_per_s'] / ours['ingest_seq']['events_per_s']:.2f}x, "
              f"pipelined {pg['ingest']['events_per_s'] / ours['ingest']['events_per_s']:.2f}x "
              "(target >= 0.8x)" + "".join(
                  f"; REQ {q} p99 {pg['req'][q]['p99_ms'] / ours['req'][q]['p99_ms']:.2f}x"
                  for q in ours.get("req", {})) + (" (target <= 1.5x)" if "req" in ours else ""))
    print(f"results: {work / 'results.json'}")
    shutil.rmtree(work / "before", ignore_errors=True)
    for f in ("events.jsonl", "nostr-relay.sqlite3"):
        for p in work.glob(f + "*"):
            p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
