"""Where the relay's time goes during ingest: py-spy samples of the relay process.

    pip install py-spy                       # once, into the same virtualenv
    python benchmarks/relay_profile.py                  # this checkout
    python benchmarks/relay_profile.py --before REV     # and oa-node as of git REV

Starts the relay (SQLite) as benchmarks/relay.py does, attaches ``py-spy record`` (all
threads, ``--gil`` optional) for each ingest phase of relay.py (sequential: 1 publisher,
1 event in flight; pipelined: 16 publishers, 8 in flight each) and prints, per phase, the
share of samples per thread and the functions with the most samples (self, then
inclusive). Samples in a thread's idle wait (the writer's queue, an executor's queue,
the event loop's ``select``) are left out, so shares are of busy time. Raw collapsed
stacks are kept under benchmarks/results/relay/profile-*/ for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from relay import (  # noqa: E402  (a sibling script, not a package)
    WORK,
    Nexus,
    checkout_tree,
    loadgen,
    make_events,
    short_rev,
)

#: Leaf frames of a thread waiting for work, not doing it.
IDLE = ("WriterThread._run", "_worker", "EpollSelector.select", "BatchWriter._run",
        "Condition.wait", "Event.wait", "SQLiteStore._checkpointer")


def pyspy() -> str:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    return exe


def summarise(raw: Path, top: int) -> str:
    self_n: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_text = line.rsplit(" ", 1)
        n = int(n_text)
        frames = stack.split(";")
        names = [re.sub(r" \((?:.*/)?([^/:]*)(?::\d+)?\)$", r" (\1)", f) for f in frames[1:]]
        if not names or names[-1].startswith(IDLE):
            continue
        thread = re.sub(r"\s*\(\d+\)|_\d+$|\s*\d+", "", frames[0].split(":")[-1]).strip()
        threads[thread] += n
        total += n
        self_n[names[-1]] += n
        for name in set(names):
            incl[name] += n
    if not total:
        return "  (no busy samples)"
    out = [f"  busy samples: {total}"]
    out += [f"    {n / total:6.1%}  thread {t}" for t, n in threads.most_common()]
    out.append("  self:")
    out += [f"    {n / total:6.1%}  {f}" for f, n in self_n.most_common(top)]
    out.append("  inclusive:")
    skip = ("_run_module_as_main", "_run_code", "<module>", "main (", "run (", "Runner.run",
            "BaseEventLoop.run", "BaseEventLoop._run_once", "Handle._run", "Thread.",
            "serve.<locals>")
    out += [f"    {n / total:6.1%}  {f}" for f, n in incl.most_common(top + 12)
            if not f.startswith(skip)][:top]
    return "\n".join(out)


def profile(t: Nexus, events: Path, work: Path, seq_n: int, pipe_n: int, rate: int,
            gil: bool, top: int) -> dict[str, tuple[dict, str]]:
    url = t.start()
    out = {}
    try:
        for phase, start, n, pubs, window in (("sequential", 0, seq_n, 1, 1),
                                              ("pipelined", seq_n, pipe_n, 16, 8)):
            raw = work / f"{t.name.split()[0]}-{phase}.txt"
            cmd = [pyspy(), "record", "--threads", "-r", str(rate), "-f", "raw", "-o",
                   str(raw), "--pid", str(t.proc.pid)] + (["--gil"] if gil else [])
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached
            res = loadgen("ingest", "--url", url, "--events", str(events), "--start",
                          str(start), "--count", str(n), "--publishers", str(pubs),
                          "--window", str(window), "--cap", "60")
            spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
            spy.wait(timeout=60)
            out[phase] = (res, summarise(raw, top))
    finally:
        t.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="also profile oa-node as of git REV")
    ap.add_argument("--seq", type=int, default=3000)
    ap.add_argument("--pipe", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    pyspy()
    work = WORK / ("profile-" + time.strftime("%Y%m%d-%H%M%S"))
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.jsonl"
    print(f"signing {a.seq + a.pipe} events ...", flush=True)
    make_events(events, a.seq + a.pipe, 1000)
    targets = [Nexus(work)]
    if a.before:
        targets.append(Nexus(work, tree=checkout_tree(a.before, work / "before"),
                             label=short_rev(a.before)))
    for t in targets:
        for phase, (res, text) in profile(t, events, work, a.seq, a.pipe, a.rate, a.gil,
                                          a.top).items():
            print(f"\n== {t.name}, {phase}: {res['events_per_s']:.0f} events/s, OK p50 "
                  f"{res['p50_ms']:.2f} ms\n{text}", flush=True)
    events.unlink()
    shutil.rmtree(work / "before", ignore_errors=True)
    print(f"\nraw stacks: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
