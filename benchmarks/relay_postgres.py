"""PostgreSQL store vs SQLite store, same relay, same load generator, one run.

    eval "$(bash .ci/services)"; python benchmarks/relay_postgres.py
    python benchmarks/relay_postgres.py --before REV    # also PostgreSQL as of git REV
    python benchmarks/relay_postgres.py --quick         # smaller, for a smoke check
    python benchmarks/relay_postgres.py --sqlite-full   # also SQLite with an fsync per commit
    python benchmarks/relay_postgres.py --profile       # where one sequential save's time goes
    python benchmarks/relay_postgres.py --writers --before REV  # 1/2/4 instances' commits
    python benchmarks/relay_postgres.py --private       # on a throwaway cluster of its own

Each round starts a fresh relay process per store (SQLite file; PostgreSQL: a fresh schema
in the ``OA_TEST_POSTGRES_DSN`` / ``--postgres`` database) and drives it with
benchmarks/relay_loadgen.py: sequential ingest (one publisher, one event in flight) and
pipelined ingest (16 publishers, 8 in flight each), both reporting events/s and OK latency.
Stores are interleaved round by round (the machine is shared), and medians over rounds are
reported with the ratio PostgreSQL / SQLite. Then each store is filled to ``--store-size``
events and REQ latency is measured (300 each of by author; kind + tag; recent; limit 100),
the stores taking turns for ``--rounds`` rounds, medians reported.

Durability in every configuration: SQLite WAL with synchronous=NORMAL (a commit survives a
process crash; an OS crash may lose the last commits), PostgreSQL with the server's
``synchronous_commit`` (on by default: each commit is flushed to the WAL on disk). ``OK
true`` follows the commit in both.

``--before REV`` runs the PostgreSQL store module as it was at REV (the rest of the relay as
now), to give before/after figures measured in the same sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # harness/

from relay import (  # noqa: E402  (a sibling script, not a package)
    WORK,
    Target,
    _pg_execute,
    free_port,
    loadgen,
    make_events,
    make_queries,
    wait_port,
)

#: Runs the relay with the PostgreSQL store as of ``--before`` (files in the folder argv[1]).
_LAUNCH = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from relay_postgres import load_store
import oa_node.plugins.relay.storage.postgres as pg
pg.PostgresStore = load_store(sys.argv[1])
from oa_node.plugins.relay.__main__ import main
sys.exit(main(sys.argv[2:]))
"""
_STORE_FILES = ("postgres_sql.py", "postgres.py")  # the first is absent before its split


def store_at(rev: str, dest: Path) -> Path:
    """The PostgreSQL store's source files as of git ``rev``, written under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _STORE_FILES:
        got = subprocess.run(["git", "-C", str(HERE.parent), "show",
                              f"{rev}:plugins/relay/storage/{name}"], capture_output=True,
                             text=True)
        if got.returncode == 0:
            (dest / name).write_text(got.stdout)
    return dest


def load_store(folder: str | Path) -> Any:
    """PostgresStore from the files of :func:`store_at`; its SQL module stands in for the
    current one only while the old store module loads (the current relay keeps its own)."""
    import importlib.util

    def load(name: str, path: Path) -> Any:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    import oa_node.plugins.relay.storage.postgres  # noqa: F401  (the current SQL module)

    key = "oa_node.plugins.relay.storage.postgres_sql"
    current = sys.modules[key]
    sql = Path(folder) / "postgres_sql.py"
    try:
        if sql.exists():
            sys.modules[key] = load(key, sql)
        return load("pg_before", Path(folder) / "postgres.py").PostgresStore
    finally:
        sys.modules[key] = current
#: Runs the relay with its SQLite store at synchronous=FULL (an fsync per commit, as
#: PostgreSQL's default): the equal-durability reference (``--sqlite-full``).
_LAUNCH_FULL = """
import sys
import oa_node.plugins.relay.storage.sqlite as s
s.SQLiteStore.__init__.__kwdefaults__["synchronous"] = "FULL"
from oa_node.plugins.relay.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


class Relay(Target):
    """One relay process on one store; ``module``: a PostgreSQL store file to use instead."""

    def __init__(self, name: str, workdir: Path, dsn: str | None = None,
                 module: Path | None = None, full_sync: bool = False) -> None:
        self.name = name
        self.workdir = workdir
        self.dsn = dsn
        self.module = module
        self.full_sync = full_sync
        self.schema = ""

    def start(self) -> str:
        port = free_port()
        cfg = self.workdir / "relay.toml"
        cfg.write_text("[relay.limits]\nmax_subscriptions = 200\ncreated_at_upper_limit = 3600\n")
        args = ["--port", str(port), "--no-rate-limits", "--config", str(cfg)]
        if self.dsn:
            self.schema = "bench_" + uuid.uuid4().hex[:10]
            _pg_execute(self.dsn, f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in self.dsn else "?"
            args += ["--postgres", f"{self.dsn}{sep}search_path={self.schema}"]
        else:
            db = self.workdir / f"relay-{uuid.uuid4().hex[:8]}.sqlite3"
            args += ["--db", str(db)]
        if self.module:
            cmd = [sys.executable, "-c", _LAUNCH, str(self.module), *args]
        elif self.full_sync:
            cmd = [sys.executable, "-c", _LAUNCH_FULL, *args]
        else:
            cmd = [sys.executable, "-m", "oa_node.plugins.relay", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_port(port, self.proc)
        return f"ws://127.0.0.1:{port}"

    def stop(self) -> None:
        super().stop()
        if self.dsn and self.schema:
            _pg_execute(self.dsn, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        for p in self.workdir.glob("relay-*.sqlite3*"):
            p.unlink()


def ingest_round(t: Relay, events: Path, seq_n: int, pipe_n: int, cap: float) -> dict:
    url = t.start()
    try:
        seq = loadgen("ingest", "--url", url, "--events", str(events), "--count", str(seq_n),
                      "--publishers", "1", "--window", "1", "--cap", str(cap))
        pipe = loadgen("ingest", "--url", url, "--events", str(events), "--start", str(seq_n),
                       "--count", str(pipe_n), "--publishers", "16", "--window", "8",
                       "--cap", str(cap))
    finally:
        t.stop()
    return {"seq": seq, "pipe": pipe}


def req_runs(targets: list[Relay], events: Path, queries: Path, size: int,
             rounds: int) -> dict[str, dict]:
    """Fill each store to ``size`` events, then run the REQ phase against them in turn,
    ``rounds`` times with alternating order (the machine is shared); per query type, the
    median over rounds of its p50 and p99."""
    urls, fills, got = {}, {}, {}
    try:
        for t in targets:
            urls[t.name] = t.start()
            fills[t.name] = loadgen("ingest", "--url", urls[t.name], "--events", str(events),
                                    "--count", str(size), "--publishers", "16", "--window",
                                    "32", "--cap", "1200", timeout=1500)
        for i in range(rounds):
            for t in targets if i % 2 == 0 else targets[::-1]:
                got.setdefault(t.name, []).append(
                    loadgen("req", "--url", urls[t.name], "--queries", str(queries)))
    finally:
        for t in targets:
            if t.name in urls:
                t.stop()
    out: dict[str, dict] = {}
    for name, runs in got.items():
        out[name] = {q: {k: statistics.median(r[q][k] for r in runs)
                         for k in ("p50_ms", "p99_ms", "mean_events")} for q in runs[0]}
        out[name]["stored"] = fills[name]["ok"]
        out[name]["fill_per_s"] = fills[name]["events_per_s"]
    return out


INDEXES = ["events_pubkey_time", "events_kind_time", "events_time", "events_replaceable",
           "events_expiration", "tags_lookup", "tags_seq"]


def index_costs(dsn: str, events: Path, n: int, rounds: int) -> dict[str, float]:
    """In-process store ingest (no relay, no websocket) with every index, then without each
    one in turn (interleaved, medians): what each index costs the write path. Each is
    used by a query (see plugins/relay/storage/common.py): authors, kinds, time-only
    filters, replaceable lookups, the expiry purge, tag filters, tag rows by event."""
    import asyncio

    import asyncpg

    from oa_node.nostr.event import Event
    from oa_node.plugins.relay.storage.postgres import PostgresStore

    lines = events.read_text().splitlines()[:n]
    evs = [(Event.from_json(x), x) for x in lines]

    async def one(drop: str | None) -> float:
        schema = "bench_ix_" + uuid.uuid4().hex[:8]
        con = await asyncpg.connect(dsn)
        await con.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in dsn else "?"
        store = PostgresStore(f"{dsn}{sep}search_path={schema}")
        await store.open()
        if drop:
            await con.execute(f"DROP INDEX {schema}.{drop}")
        t0 = time.perf_counter()
        await asyncio.gather(*(store.save(e, raw) for e, raw in evs))
        rate = len(evs) / (time.perf_counter() - t0)
        await store.close()
        await con.execute(f"DROP SCHEMA {schema} CASCADE")
        await con.close()
        return rate

    async def run() -> dict[str, float]:
        got: dict[str, list[float]] = {}
        configs: list[str | None] = [None, *INDEXES]
        for i in range(rounds):  # a different order each round: no config always first
            k = (3 * i) % len(configs)
            order = configs[k:] + configs[:k]
            for drop in order if i % 2 == 0 else order[::-1]:
                got.setdefault(drop or "all", []).append(await one(drop))
        return {k: statistics.median(v) for k, v in got.items()}

    return asyncio.run(run())


def profile(dsn: str, events: Path, n: int, rounds: int) -> str:
    """One event at a time, as a sequential publisher drives the store: a no-op round trip
    (SELECT 1), the store's save (one statement and its commit), the same with
    synchronous_commit off (the difference is the commit's WAL flush), and the SQLite
    store's save at synchronous NORMAL and FULL, in-process, interleaved, medians in ms."""
    import asyncio
    import tempfile

    import asyncpg

    from oa_node.nostr.event import Event
    from oa_node.plugins.relay.storage.postgres import PostgresStore
    from oa_node.plugins.relay.storage.sqlite import SQLiteStore

    lines = events.read_text().splitlines()
    evs = [(Event.from_json(x), x) for x in lines]
    got: dict[str, list[float]] = {}

    async def timed(name: str, store: Any, batch: list, noop: Any = None) -> None:
        await store.open()
        t_rt, t_save = [], []
        for ev, raw in batch:
            if noop is not None:
                t0 = time.perf_counter()
                await noop.fetchval("SELECT 1")
                t_rt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await store.save(ev, raw)
            t_save.append(time.perf_counter() - t0)
        await store.close()
        got.setdefault(name, []).append(statistics.median(t_save) * 1000)
        if t_rt:
            got.setdefault("postgres no-op round trip", []).append(
                statistics.median(t_rt) * 1000)

    async def run() -> None:
        schema = "bench_prof_" + uuid.uuid4().hex[:8]
        con = await asyncpg.connect(dsn)
        await con.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in dsn else "?"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(rounds):
                    todo = [("postgres save", "on"), ("postgres save, synchronous_commit off",
                             "off"), ("sqlite save (NORMAL)", "NORMAL"),
                            ("sqlite save (FULL)", "FULL")]
                    for name, mode in todo if i % 2 == 0 else todo[::-1]:
                        batch, evs[:n] = evs[:n], []
                        if name.startswith("postgres"):
                            store: Any = PostgresStore(
                                f"{dsn}{sep}search_path={schema}&synchronous_commit={mode}")
                            await timed(name, store, batch, con)
                        else:
                            path = Path(tmp) / f"{mode}-{i}.sqlite3"
                            await timed(name, SQLiteStore(path, synchronous=mode), batch)
        finally:
            await con.execute(f"DROP SCHEMA {schema} CASCADE")
            await con.close()

    asyncio.run(run())
    rows = [f"one sequential save, in-process, median ms over {rounds} rounds of {n}:"]
    rows += [f"  {k:42} {statistics.median(v):6.3f}" for k, v in got.items()]
    return "\n".join(rows)


def writers(dsn: str, events: Path, stores: dict[str, Any], rounds: int,
            secs: float = 2.0) -> str:
    """N store instances on one schema (as N relays would be), each saving one event at a
    time: aggregate saves/s for N = 1, 2, 4, per store implementation, interleaved,
    medians. Shows whether the instances' commits share WAL flushes (group commit)."""
    import asyncio

    import asyncpg

    from oa_node.nostr.event import Event

    evs = iter([(Event.from_json(x), x) for x in events.read_text().splitlines()])
    got: dict[tuple[int, str], list[float]] = {}

    async def one(cls: Any, dsn_s: str, n: int) -> float:
        group = [cls(dsn_s) for _ in range(n)]
        for st in group:
            await st.open()
        stop = time.perf_counter() + secs
        done = 0

        async def saver(st: Any) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                ev, raw = next(evs)
                await st.save(ev, raw)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(saver(st) for st in group))
        rate = done / (time.perf_counter() - t0)
        for st in group:
            await st.close()
        return rate

    async def run() -> None:
        con = await asyncpg.connect(dsn)
        sep = "&" if "?" in dsn else "?"
        schemas = {name: "bench_w_" + uuid.uuid4().hex[:8] for name in stores}
        try:
            for schema in schemas.values():
                await con.execute(f"CREATE SCHEMA {schema}")
            for i in range(rounds):
                order = list(stores.items())
                for n in (1, 2, 4):
                    for name, cls in order if (i + n) % 2 == 0 else order[::-1]:
                        got.setdefault((n, name), []).append(
                            await one(cls, f"{dsn}{sep}search_path={schemas[name]}", n))
        finally:
            for schema in schemas.values():
                await con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await con.close()

    asyncio.run(run())
    rows = [f"N store instances on one database, one sequential saver each: aggregate "
            f"saves/s (medians of {rounds})"]
    for (n, name), v in sorted(got.items()):
        rows.append(f"  N={n} {name:24} {statistics.median(v):7.0f}")
    return "\n".join(rows)


def med(rounds: list[dict], phase: str, key: str) -> float:
    return statistics.median(r[phase][key] for r in rounds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", metavar="DSN", default=os.environ.get("OA_TEST_POSTGRES_DSN"),
                    help="a database to make scratch schemas in (default: OA_TEST_POSTGRES_DSN)")
    ap.add_argument("--before", metavar="REV", help="also run the PostgreSQL store as of REV")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq", type=int, default=1500, help="events per sequential ingest")
    ap.add_argument("--pipe", type=int, default=8000, help="events per pipelined ingest")
    ap.add_argument("--cap", type=float, default=20.0, help="max seconds per ingest phase")
    ap.add_argument("--store-size", type=int, default=100_000)
    ap.add_argument("--no-req", action="store_true", help="ingest only")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--async-commit", action="store_true",
                    help="also PostgreSQL with ?synchronous_commit=off (opt-in: acknowledged "
                         "events can be lost if PostgreSQL itself crashes)")
    ap.add_argument("--sqlite-full", action="store_true",
                    help="also SQLite at synchronous=FULL (an fsync per commit, as PostgreSQL)")
    ap.add_argument("--profile", action="store_true",
                    help="only: where one sequential save's time goes (in-process)")
    ap.add_argument("--writers", action="store_true",
                    help="only: 1, 2, 4 in-process store instances saving one event at a time "
                         "each (with --before: also the store as of REV)")
    ap.add_argument("--indexes", action="store_true",
                    help="only: what each index costs store ingest (in-process)")
    ap.add_argument("--private", action="store_true",
                    help="run PostgreSQL on a throwaway cluster of its own (initdb in a temp "
                         "dir, default settings, no other sessions' WAL) instead of --postgres")
    a = ap.parse_args()
    if a.private:
        import asyncio

        from harness.pg_cluster import ThrowawayCluster, postgres_bindir

        bindir = postgres_bindir()
        if bindir is None:
            ap.error("--private: no PostgreSQL binaries under /usr/lib/postgresql")
        cluster = ThrowawayCluster(bindir)
        try:
            cluster.init()
            asyncio.run(cluster.start())
            a.postgres = cluster.dsn
            return run(a)
        finally:
            cluster.cleanup()
    if not a.postgres:
        ap.error('no database: pass --postgres DSN or eval "$(bash .ci/services)"')
    return run(a)


def run(a: argparse.Namespace) -> int:
    if a.quick:
        a.rounds, a.seq, a.pipe, a.store_size = 1, 300, 2000, 10_000
    work = WORK / ("pg-" + time.strftime("%Y%m%d-%H%M%S"))
    work.mkdir(parents=True, exist_ok=True)
    per_round = a.seq + a.pipe
    total = 20000 if a.indexes or a.profile or a.writers else max(per_round, a.store_size)
    print(f"signing {total} events ...", flush=True)
    events = work / "events.jsonl"
    make_events(events, total, 1000)
    make_queries(work / "queries.json", 1000, 300)  # p99 of 300, not the max of 100

    if a.profile:
        print(profile(a.postgres, events, 400, max(a.rounds, 2)))
        events.unlink()
        return 0
    if a.writers:
        from oa_node.plugins.relay.storage.postgres import PostgresStore

        impls = {"current": PostgresStore}
        if a.before:
            impls[f"@{a.before[:10]}"] = load_store(store_at(a.before, work / "pg_before"))
        print(writers(a.postgres, events, impls, max(a.rounds, 2)))
        events.unlink()
        return 0
    targets = [Relay("sqlite", work), Relay("postgres", work, a.postgres)]
    if a.sqlite_full:
        targets.append(Relay("sqlite, synchronous=FULL", work, full_sync=True))
    if a.async_commit:
        sep = "&" if "?" in a.postgres else "?"
        targets.append(Relay("postgres, async commit", work,
                             f"{a.postgres}{sep}synchronous_commit=off"))
    if a.before:
        module = store_at(a.before, work / "pg_before")
        targets.append(Relay(f"postgres@{a.before[:10]}", work, a.postgres, module))
    if a.indexes:
        costs = index_costs(a.postgres, events, min(total, 20000), a.rounds)
        print("store ingest, 20k events at once, in-process (medians):")
        for name, rate in costs.items():
            label = "all indexes" if name == "all" else f"without {name}"
            print(f"  {label:30} {rate:7.0f} ev/s  ({rate / costs['all']:.2f}x)")
        events.unlink()
        return 0
    rounds: dict[str, list[dict]] = {t.name: [] for t in targets}
    for i in range(a.rounds):
        order = targets if i % 2 == 0 else targets[::-1]  # interleaved, alternating
        for t in order:
            r = ingest_round(t, events, a.seq, a.pipe, a.cap)
            rounds[t.name].append(r)
            print(f"round {i + 1} {t.name:22} sequential {r['seq']['events_per_s']:7.0f}/s "
                  f"(OK p50 {r['seq']['p50_ms']:.1f} ms)  pipelined "
                  f"{r['pipe']['events_per_s']:7.0f}/s (OK p50 {r['pipe']['p50_ms']:.1f} ms, "
                  f"failed {r['seq']['failed'] + r['pipe']['failed']})", flush=True)
    reqs: dict[str, dict] = {}
    if not a.no_req:
        reqs = req_runs(targets[:2], events, work / "queries.json", a.store_size, a.rounds)
        for name, r in reqs.items():
            print(f"REQ {name}: {json.dumps(r)}", flush=True)

    base = rounds["sqlite"]
    print(f"\nmedians over {a.rounds} interleaved rounds (ratio to SQLite in brackets)")
    print(f"{'store':24} {'seq ev/s':>16} {'seq OK p50':>11} {'pipe ev/s':>16} {'pipe OK p50':>12}")
    for name, rs in rounds.items():
        s, p = med(rs, "seq", "events_per_s"), med(rs, "pipe", "events_per_s")
        sr, pr = s / med(base, "seq", "events_per_s"), p / med(base, "pipe", "events_per_s")
        print(f"{name:24} {s:9.0f} ({sr:4.2f}x) {med(rs, 'seq', 'p50_ms'):8.1f} ms "
              f"{p:9.0f} ({pr:4.2f}x) {med(rs, 'pipe', 'p50_ms'):9.1f} ms")
    if reqs:
        print(f"\nREQ latency, limit 100, at {a.store_size} stored events (p50 / p99 ms of 300 "
              f"queries each; medians over {a.rounds} alternating rounds)")
        for q in ("by author", "kind+tag", "recent"):
            cells = [f"{n}: {r[q]['p50_ms']:.1f} / {r[q]['p99_ms']:.1f}" for n, r in reqs.items()]
            ratio = reqs["postgres"][q]["p99_ms"] / reqs["sqlite"][q]["p99_ms"]
            print(f"  {q:10} " + "   ".join(cells) + f"   p99 ratio {ratio:.2f}x")
    out: dict[str, Any] = {"rounds": rounds, "req": reqs, "args": vars(a)}
    (work / "results.json").write_text(json.dumps(out, indent=1))
    print(f"results: {work / 'results.json'}")
    events.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
