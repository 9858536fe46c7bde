"""NIP-77 sync benchmark: bytes and time for ``oa-node relay sync`` between two relays.

    python benchmarks/relay_sync.py            # 100k events at 0.1% / 1% / 10% difference
    python benchmarks/relay_sync.py --quick    # 10k events, a smoke check
    python benchmarks/relay_sync.py --before c3408d9   # also that revision's sync client

Two real relay processes on 127.0.0.1 (SQLite), each missing its own half of the
differing events. For each difference the table gives the bytes exchanged with the remote
for the reconciliation (NEG-OPEN/NEG-MSG frames) and for copying the missing events both
ways, the rounds, and the wall time of the whole sync as ``oa-node relay sync`` runs it for
the node's own relay (local ids read from its store with ``EventStore.id_pairs``).
References, measured in the same run on the same relays: downloading the remote's whole
event set by paged REQs (what a sync without NIP-77 has to move), the size of its ids
alone, and reading the local side's ids by paged REQs (how a sync reads a relay whose
store it does not have, ``--local URL``) beside reading them from the store with
``id_pairs`` and from the store's event JSON (how the relay's NEG-OPEN snapshot read them
before ``id_pairs``), median of 3 each. ``--before REV`` also runs the sync client
(``oa_node/client/negsync.py``) as of git REV on a fresh pair of the same relays (the
relays themselves run this tree): before/after in one run. Events are signed before any
timing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.relay import RelayProcess
from harness.sync_seed import fill_pair, ids_in, make_events
from oa_node.client import RelayConnection, negsync
from oa_node.nostr.filter import Filter
from oa_node.plugins.relay.storage.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[1]


def _conn(url: str) -> RelayConnection:
    return RelayConnection(url, reconnect=False, verify=False, max_message_size=2**24,
                           max_queue=4 * negsync.PAGE)


async def _full_download(url: str) -> tuple[int, int, float]:
    """(events, bytes, seconds) to read every event of ``url`` by paged REQs over a bare
    websocket (JSON decoded, nothing checked: the floor for moving the whole set)."""
    async with connect(url, compression=None, max_size=2**24) as ws:
        moved = 0
        seen: set[str] = set()
        until: int | None = None
        t0 = time.perf_counter()
        while True:
            page: dict[str, Any] = {"limit": negsync.PAGE}
            if until is not None:
                page["until"] = until
            req = json.dumps(["REQ", "all", page])
            moved += len(req)
            await ws.send(req)
            fresh, oldest = 0, None
            while True:
                text = await ws.recv()
                moved += len(text)
                msg = json.loads(text)
                if msg[0] == "EOSE":
                    break
                if msg[0] == "EVENT":
                    ev = msg[2]
                    oldest = ev["created_at"] if oldest is None else min(oldest, ev["created_at"])
                    if ev["id"] not in seen:
                        seen.add(ev["id"])
                        fresh += 1
            await ws.send('["CLOSE","all"]')
            if oldest is None:
                break
            until = oldest if fresh else oldest - 1
        return len(seen), moved, time.perf_counter() - t0


async def _read_local(url: str, db: Path) -> tuple[float, float, float]:
    """Median seconds to read the local ids by paged REQs, from the store (id_pairs), and
    from the store's event JSON (how the relay's NEG-OPEN read them before id_pairs)."""
    by_req: list[float] = []
    by_store: list[float] = []
    by_json: list[float] = []
    for _ in range(3):
        async with _conn(url) as conn:
            t0 = time.perf_counter()
            n_req = len(await negsync.read_relay_pairs(conn, Filter(), 120))
            by_req.append(time.perf_counter() - t0)
        store = SQLiteStore(db)
        await store.open()
        try:
            t0 = time.perf_counter()
            n_store = len(await store.id_pairs(Filter()))
            by_store.append(time.perf_counter() - t0)
            t0 = time.perf_counter()  # the relay's NEG-OPEN snapshot before id_pairs
            raws = await store.query([Filter()])
            n_json = len([(json.loads(r)["created_at"], json.loads(r)["id"]) for r in raws])
            by_json.append(time.perf_counter() - t0)
        finally:
            await store.close()
        assert n_req == n_store == n_json, (n_req, n_store, n_json)
    return statistics.median(by_req), statistics.median(by_store), statistics.median(by_json)


async def _sync(a: RelayProcess, b: RelayProcess) -> negsync.SyncResult:
    """What ``oa-node relay sync`` does for the node's own relay: its store is read."""
    store = SQLiteStore(a.db)
    await store.open()
    try:
        return await negsync.sync(a.url, b.url, {}, "both", timeout=120, local_store=store)
    finally:
        await store.close()


def _client_at(rev: str, where: Path) -> Any:
    """``oa_node/client/negsync.py`` as of git ``rev``, loaded as its own module."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:oa_node/client/negsync.py"],
                          check=True, capture_output=True, text=True).stdout
    path = where / "negsync_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("negsync_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["negsync_before"] = module  # (its dataclasses look themselves up there)
    spec.loader.exec_module(module)
    return module


def _one_pair(tmp: str, events: list[Any], diff: float
              ) -> tuple[Path, Path, int, int, RelayProcess, RelayProcess]:
    a_db, b_db = Path(tmp) / "a.db", Path(tmp) / "b.db"
    only_a, only_b = fill_pair(a_db, b_db, events, diff)
    a = RelayProcess(a_db, extra=["--no-rate-limits"])
    b = RelayProcess(b_db, extra=["--no-rate-limits"])
    a.start(60)
    b.start(60)
    return a_db, b_db, only_a, only_b, a, b


def _before(client: Any, events: list[Any], diff: float) -> tuple[Any, float]:
    """The old client's whole sync on a fresh pair: (its result, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        _, _, only_a, only_b, a, b = _one_pair(tmp, events, diff)
        try:
            t0 = time.perf_counter()
            res = asyncio.run(client.sync(a.url, b.url, {}, "both", 120))
            took = time.perf_counter() - t0
        finally:
            a.stop()
            b.stop()
    assert (res.have, res.need) == (only_a, only_b), res
    return res, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="10k events")
    ap.add_argument("--diffs", default="0.001,0.01,0.1", help="fractions that differ")
    ap.add_argument("--before", metavar="REV", help="also the sync client as of git REV")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relay-sync-bench-"))
    old_client = _client_at(args.before, work) if args.before else None
    total = 10_000 if args.quick else args.events
    diffs = [float(x) for x in args.diffs.split(",")]
    t0 = time.perf_counter()
    events = make_events(total)
    print(f"signed {total} events in {time.perf_counter() - t0:.1f}s", flush=True)
    rows = []
    befores: list[tuple[float, Any, float]] = []
    ref_bytes = ref_time = None
    for diff in diffs:
        with tempfile.TemporaryDirectory() as tmp:
            a_db, b_db, only_a, only_b, a, b = _one_pair(tmp, events, diff)
            try:
                if ref_bytes is None:
                    n, ref_bytes, ref_time = asyncio.run(_full_download(b.url))
                    print(f"reference: full download of the remote ({n} events) "
                          f"{ref_bytes} B in {ref_time:.2f}s", flush=True)
                by_req, by_store, by_json = asyncio.run(_read_local(a.url, a_db))
                print(f"  local ids: paged REQs {by_req:.2f}s, store id_pairs {by_store:.3f}s "
                      f"({by_req / by_store:.0f}x), store JSON {by_json:.2f}s "
                      f"({by_json / by_store:.0f}x)", flush=True)
                t1 = time.perf_counter()
                res = asyncio.run(_sync(a, b))
                took = time.perf_counter() - t1
            finally:
                a.stop()
                b.stop()
            converged = ids_in(a_db) == ids_in(b_db) and len(ids_in(a_db)) == total
            assert (res.have, res.need) == (only_a, only_b), (res, only_a, only_b)
            rows.append((diff, only_a + only_b, res, took, converged, by_req, by_store, by_json))
            print(f"  {diff:.1%}: done in {took:.2f}s {res.seconds}", flush=True)
        if old_client is not None:
            old, old_took = _before(old_client, events, diff)
            befores.append((diff, old, old_took))
            print(f"  {diff:.1%} as of {args.before}: done in {old_took:.2f}s {old.seconds}",
                  flush=True)
    assert ref_bytes and ref_time
    ids_hex = total * 64
    print(f"\n{total} events per relay; reference: full download {ref_bytes} B, "
          f"{ref_time:.2f}s; ids alone {ids_hex} B (hex)")
    print(f"{'differ':>7} {'events':>7} {'neg B':>10} {'neg/ids':>8} {'copy B':>10} "
          f"{'total/full':>10} {'rounds':>6} {'time s':>7} {'time/full':>9} converged "
          f"{'ids REQ s':>9} {'id_pairs s':>10} {'JSON s':>6}")
    for diff, n, res, took, ok, by_req, by_store, by_json in rows:
        tot = res.neg_bytes + res.transfer_bytes
        print(f"{diff:>7.1%} {n:>7} {res.neg_bytes:>10} {res.neg_bytes / ids_hex:>8.2%} "
              f"{res.transfer_bytes:>10} {tot / ref_bytes:>10.2%} {res.rounds:>6} "
              f"{took:>7.2f} {took / ref_time:>9.2f} {ok!s:>9} {by_req:>9.2f} {by_store:>10.3f} "
              f"{by_json:>6.2f}")
    print(f"median sync time {statistics.median(r[3] for r in rows):.2f}s")
    if befores:
        print(f"\nbefore/after (sync client as of {args.before} vs this tree, same relays)")
        print(f"{'differ':>7} {'before s':>8} {'after s':>7} {'speed-up':>8} "
              f"{'read_local before/after':>23} {'neg B before/after':>21} "
              f"{'copy B before/after':>21}")
        for (diff, _, res, took, *_), (_, old, old_took) in zip(rows, befores, strict=True):
            print(f"{diff:>7.1%} {old_took:>8.2f} {took:>7.2f} {old_took / took:>7.1f}x "
                  f"{old.seconds['read_local']:>11.2f} / {res.seconds['read_local']:<9.2f} "
                  f"{old.neg_bytes:>10} / {res.neg_bytes:<8} "
                  f"{old.transfer_bytes:>10} / {res.transfer_bytes:<8}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
