"""Scale-out on PostgreSQL: one relay instance vs two on one database, and where the CPU goes.

    eval "$(bash .ci/services)"; python benchmarks/relay_scaleout.py
    python benchmarks/relay_scaleout.py --rounds 3 --seq 1500 --pipe 10000
    python benchmarks/relay_scaleout.py --quick
    python benchmarks/relay_scaleout.py --before REV   # also oa-node as of REV, same run

Each configuration starts fresh relay processes on a fresh schema of one database
(``OA_TEST_POSTGRES_DSN`` / ``--postgres``) and drives them with one load-generator process
(benchmarks/relay_loadgen.py; with two instances its publishers alternate between them):

- sequential: one publisher per instance, each waiting for its OK (1x1 vs 2x1), and one
  instance with two publishers (what two publishers get without a second instance);
- pipelined: 16 publishers with 8 events in flight each, on one instance or split 8 + 8.

Every configuration reports aggregate events/s and OK p50, and the CPU seconds per 1,000
events of each process group, from /proc/<pid>/stat before and after the phase: the relay
processes, the PostgreSQL backends serving them (found by application_name), the
PostgreSQL server's own processes (WAL writer, checkpointer...; the server may serve other
databases, so this share can include their load), the load generator (its rusage), and
the rest of the machine (/proc/stat busy time minus all of those). Configurations are
interleaved round by round and medians reported. Run as a user that may read the
PostgreSQL processes' /proc entries (root, or the postgres user) for the server columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from relay import (  # noqa: E402  (a sibling script, not a package)
    _LAUNCH_TREE,
    LOADGEN,
    WORK,
    checkout_tree,
    free_port,
    make_events,
    wait_port,
)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds (0 when it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle (nor waiting for I/O) since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / TICK


def postgres_aux_pids() -> list[int]:
    """The PostgreSQL server's own processes (postmaster and background workers): every
    process named postgres whose title names no client connection."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if comm in ("postgres", "postmaster") or cmd.startswith("postgres:"):
            if "(" not in cmd:  # a backend's title carries its client "host(port)"
                out.append(int(d.name))
    return out


async def _fetch(dsn: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        return list(await con.fetch(sql, *args))
    finally:
        await con.close()


class Instances:
    """``n`` relay processes on one fresh schema; their PostgreSQL sessions carry
    ``application_name`` so their backends can be found."""

    def __init__(self, dsn: str, n: int, workdir: Path, tree: Path | None = None) -> None:
        self.dsn, self.n, self.workdir, self.tree = dsn, n, workdir, tree
        self.schema = "bench_so_" + uuid.uuid4().hex[:10]
        self.app = "oa-scaleout-" + self.schema[9:]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> str:
        asyncio.run(_fetch(self.dsn, f"CREATE SCHEMA {self.schema}"))
        cfg = self.workdir / "relay.toml"
        cfg.write_text("[relay.limits]\nmax_subscriptions = 200\ncreated_at_upper_limit = 3600\n")
        sep = "&" if "?" in self.dsn else "?"
        dsn = f"{self.dsn}{sep}search_path={self.schema}&application_name={self.app}"
        urls = []
        for _ in range(self.n):
            port = free_port()
            launch = ["-c", _LAUNCH_TREE, str(self.tree)] if self.tree else [
                "-m", "oa_node.plugins.relay"]
            proc = subprocess.Popen(
                [sys.executable, *launch, "--port", str(port), "--no-rate-limits",
                 "--config", str(cfg), "--postgres", dsn], stdout=subprocess.DEVNULL)
            self.procs.append(proc)
            wait_port(port, proc)
            urls.append(f"ws://127.0.0.1:{port}")
        return ",".join(urls)

    def backends(self) -> list[int]:
        rows = asyncio.run(_fetch(self.dsn, "SELECT pid FROM pg_stat_activity"
                                  " WHERE application_name = $1", self.app))
        return [r[0] for r in rows]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        asyncio.run(_fetch(self.dsn, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))


def drive(inst: Instances, url: str, events: Path, start: int, count: int, publishers: int,
          window: int, cap: float) -> dict[str, Any]:
    """One ingest phase with the CPU split of every process group over it."""
    backends = inst.backends()
    relays = [p.pid for p in inst.procs]
    aux = postgres_aux_pids()
    before = {pid: cpu_s(pid) for pid in relays + backends + aux}
    busy0 = machine_busy_s()
    t0 = time.perf_counter()
    gen = subprocess.Popen(
        [sys.executable, str(LOADGEN), "ingest", "--url", url, "--events", str(events),
         "--start", str(start), "--count", str(count), "--publishers", str(publishers),
         "--window", str(window), "--cap", str(cap)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = gen.stdout.read(), gen.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(gen.pid, 0)
    gen.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if gen.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
    res: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    late = set(inst.backends()) - set(backends)  # pool connections opened during the phase
    used = {pid: cpu_s(pid) - before.get(pid, 0.0) for pid in relays + backends + aux}
    used.update({pid: cpu_s(pid) for pid in late})
    groups = {
        "relays": sum(used[p] for p in relays),
        "pg backends": sum(used[p] for p in backends) + sum(used[p] for p in late),
        "pg server": sum(used[p] for p in aux),
        "load generator": usage.ru_utime + usage.ru_stime,
    }
    groups["rest of machine"] = max(0.0, machine_busy_s() - busy0 - sum(groups.values()))
    ok = max(1, res["ok"])
    res["cpu_ms_per_event"] = {k: 1000 * v / ok for k, v in groups.items()}
    res["cpu_cores"] = {k: v / wall for k, v in groups.items()}
    return res


CONFIGS = [
    # name, instances, publishers, window, phase
    ("sequential, 1 instance x 1 publisher", 1, 1, 1, "seq"),
    ("sequential, 1 instance x 2 publishers", 1, 2, 1, "seq"),
    ("sequential, 2 instances x 1 publisher", 2, 2, 1, "seq"),
    ("pipelined, 1 instance x 16 publishers", 1, 16, 8, "pipe"),
    ("pipelined, 2 instances x 8 publishers", 2, 16, 8, "pipe"),
]
GROUPS = ["relays", "pg backends", "pg server", "load generator", "rest of machine"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", metavar="DSN", default=os.environ.get("OA_TEST_POSTGRES_DSN"),
                    help="a database to make scratch schemas in (default: OA_TEST_POSTGRES_DSN)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq", type=int, default=1500, help="events per sequential phase")
    ap.add_argument("--pipe", type=int, default=10000, help="events per pipelined phase")
    ap.add_argument("--cap", type=float, default=20.0, help="max seconds per phase")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--before", metavar="REV",
                    help="also every configuration with oa-node as of git REV (same run)")
    a = ap.parse_args()
    if not a.postgres:
        ap.error('no database: pass --postgres DSN or eval "$(bash .ci/services)"')
    if a.quick:
        a.rounds, a.seq, a.pipe = 1, 400, 3000
    work = WORK / ("scaleout-" + time.strftime("%Y%m%d-%H%M%S"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"signing {a.pipe} events ...", flush=True)
    events = work / "events.jsonl"
    make_events(events, max(a.pipe, 2 * a.seq), 1000)
    trees: list[tuple[str, Path | None]] = [("", None)]
    if a.before:
        trees.append((f" @{a.before[:10]}", checkout_tree(a.before, work / "before")))
    configs = [(name + label, n, pubs, window, phase, tree) for name, n, pubs, window, phase
               in CONFIGS for label, tree in trees]
    got: dict[str, list[dict]] = {c[0]: [] for c in configs}
    for i in range(a.rounds):
        for name, n, pubs, window, phase, tree in configs if i % 2 == 0 else configs[::-1]:
            inst = Instances(a.postgres, n, work, tree)
            url = inst.start()
            try:
                count = a.seq * (pubs if phase == "seq" else 1) if phase == "seq" else a.pipe
                r = drive(inst, url, events, 0, count, pubs, window, a.cap)
            finally:
                inst.stop()
            got[name].append(r)
            print(f"round {i + 1} {name:52} {r['events_per_s']:7.0f} ev/s "
                  f"(OK p50 {r['p50_ms']:.1f} ms, failed {r['failed']})", flush=True)

    def med(rs: list[dict], *path: str) -> float:
        vals = []
        for r in rs:
            v: Any = r
            for k in path:
                v = v[k]
            vals.append(v)
        return statistics.median(vals)

    print(f"\nmedians over {a.rounds} interleaved rounds; CPU ms per event by process group "
          "(and cores busy during the phase)")
    head = f"{'configuration':52} {'ev/s':>7} {'OK p50':>7}  " + "  ".join(
        f"{g:>17}" for g in GROUPS)
    print(head)
    for name, rs in got.items():
        cells = "  ".join(f"{med(rs, 'cpu_ms_per_event', g):6.3f} ({med(rs, 'cpu_cores', g):4.2f})"
                          f"{'':3}" for g in GROUPS)
        print(f"{name:52} {med(rs, 'events_per_s'):7.0f} {med(rs, 'p50_ms'):5.1f}ms  {cells}")
    for label, _ in trees:
        s1, s2 = (med(got[CONFIGS[k][0] + label], "events_per_s") for k in (0, 2))
        p1, p2 = (med(got[CONFIGS[k][0] + label], "events_per_s") for k in (3, 4))
        print(f"scale-out{label}, 2 instances / 1: sequential {s2 / s1:.2f}x, "
              f"pipelined {p2 / p1:.2f}x")
    (work / "results.json").write_text(json.dumps({"runs": got, "args": vars(a)}, indent=1))
    print(f"results: {work / 'results.json'}")
    events.unlink()
    shutil.rmtree(work / "before", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
