"""Marketplace benchmark: one command, real relay process, real Docker, real NWC wallet.

    .venv/bin/python benchmarks/marketplace.py [--jobs 10] [--throughput 50]

1. Latency of a trivial ``oa.sandbox_run.v1`` job (``echo hi``, no repository), one at a
   time, from ``job submit`` to the buyer's verified result, split into: relay in (submit
   -> provider has it), queue (-> executor starts), sandbox (executor), provider out
   (invoice, sign, publish), relay out (-> buyer has the result), verification; plus the
   time to paid. Medians over ``--jobs`` runs, and the ratio of the whole to the sandbox
   part and to a bare ``docker run`` of the same command.
2. Settlement (issue 13): submit -> verified -> settled for the same trivial job paid
   plainly after verification (settled = the buyer's payment answered) and through escrow
   (funded: the buyer's hold payment locked; settled: the provider settled the hold with
   the released preimage), beside a bare ``docker run --rm --network none IMAGE true``
   measured in the same run; medians and ratios. Escrow's time before work is split at
   the provider having the request, asking its wallet for the hold invoice, having it,
   the buyer paying it and the provider starting once the lock is seen
   (``escrow_minus_plain_work_starts_ms``: what escrow adds before work starts). The bare
   reference runs once beside each plain + escrow pair (interleaved, so machine load hits
   it alike), and each mode's time is split end to end (``*_split``: relay in, before
   work, sandbox, provider out, relay out, verification, payment). ``to_paid`` (plain) is
   until the job's state says paid, its verdict labels published too.
3. Throughput: ``--throughput`` trivial jobs submitted at once to one provider
   (concurrency = CPU count), until every one is verified and paid.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.marketplace import build, node_config, running, wait_announced  # noqa: E402
from harness.relay import RelayProcess  # noqa: E402
from oa_node.client import RelayPool  # noqa: E402
from oa_node.plugins.buyer.engine import Buyer  # noqa: E402
from oa_node.plugins.buyer.settings import BuyerSettings  # noqa: E402
from oa_node.plugins.ledger_wallet.ledger import Ledger  # noqa: E402
from oa_node.plugins.ledger_wallet.service import WalletService  # noqa: E402
from oa_node.plugins.provider.ledger import open_provider_ledger  # noqa: E402
from oa_node.sandbox.docker import connect  # noqa: E402
from oa_node.sandbox.image import build_base_image  # noqa: E402
from oa_node.wallet import Wallet  # noqa: E402

SCHEMA = "oa.sandbox_run.v1"
DOC: dict[str, Any] = {
    "sandbox": {"provider": "docker", "image_digest": "", "network_policy": "none",
                "resources": {"memory_mb": 256, "cpus": 1.0, "timeout_secs": 30}},
    "commands": [{"cmd": "echo hi"}], "env": {},
    "verification": {"mode": "objective", "redundancy": 1, "adjudication": "none"},
}


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bare_docker_ms(image: str, runs: int, cmd: tuple[str, ...] = ("sh", "-c", "echo hi")
                   ) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, *cmd],
                       check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return med(times)


def bare_true_once(image: str) -> float:
    """Seconds of one ``docker run --rm --network none IMAGE true`` (the reference)."""
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


async def settlement(buyer: Buyer, pledger: Any, pk: str, jobs: int, image: str
                     ) -> dict[str, Any]:
    """Submit -> verified -> settled, plain pay-after-verify and escrow, alternating, with
    one buyer running throughout (as the buyer service does): a buyer started per job
    would put its start-up in the same event loop on escrow's critical path (funding needs
    a running buyer) while plain jobs hide it behind the sandbox run."""
    plain_settings = dataclasses.replace(buyer.settings, escrow="off")
    escrow_settings = dataclasses.replace(buyer.settings, escrow="on")
    times: dict[str, dict[str, list[float]]] = {
        # to_settled: the buyer's payment answered (the money moved); to_paid: the job's
        # state says paid, after its verdict labels went out too
        "plain": {"to_verified": [], "to_settled": [], "to_paid": []},
        "escrow": {"to_funded": [], "to_verified": [], "to_settled": [],
                   # where the time before work goes: the provider has the request, its
                   # hold invoice is made, the buyer has it and pays, the provider sees
                   # the lock and starts
                   "received": [], "hold_asked": [], "hold_made": [], "buyer_pays": [],
                   "work_starts": []},
        "plain_start": {"work_starts": []},
        "plain_split": {}, "escrow_split": {},
        # the reference, one run beside each plain + escrow pair (same load as theirs)
        "bare": {"docker_run_true": []}}

    def split(into: dict[str, list[float]], b: dict[str, Any], p: dict[str, Any],
              settled: float) -> None:
        """Where one job's time goes, end to end (the parts add up to to_settled)."""
        for part, dt in (
                ("relay_in", p["received_at"] - b["submitted_at"]),
                ("before_work", p["started_at"] - p["received_at"]),  # queue (escrow: funding)
                ("sandbox", p["exec_secs"]),
                ("provider_out", p["finished_at"] - p["started_at"] - p["exec_secs"]),
                ("relay_out", b["first_result_at"] - p["finished_at"]),
                ("verification", b["verified_at"] - b["first_result_at"]),
                ("payment", settled - b["verified_at"])):
            into.setdefault(part, []).append(dt)

    async def one(settings: BuyerSettings) -> tuple[dict[str, Any], dict[str, Any]]:
        buyer.settings = settings
        job = await buyer.submit(SCHEMA, DOC, providers=[pk])
        escrowed = settings.escrow == "on"
        with anyio.fail_after(60):
            while True:
                b = buyer.ledger.get(job).data  # type: ignore[union-attr]
                p = (pledger.get(job).data if pledger.get(job) else {})  # type: ignore
                if b.get("paid_at") and (not escrowed or p.get("hold_settled_at")):
                    break
                await anyio.sleep(0.005)
            # one job at a time: its bookkeeping (the provider seeing it paid, the labels)
            # ends before the next is submitted, as for the bare runs it is compared with
            while not (pledger.get(job).state == "paid"  # type: ignore[union-attr]
                       and buyer.ledger.get(job).data.get("labelled")):  # type: ignore[union-attr]
                await anyio.sleep(0.005)
        return b, p

    original = buyer.settings
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(buyer.run)
            await buyer.ready.wait()
            await one(escrow_settings)  # warm-up
            for _ in range(jobs):
                b, p = await one(plain_settings)
                times["plain"]["to_verified"].append(b["verified_at"] - b["submitted_at"])
                answered = next(iter(b["payments"].values()))["at"]
                times["plain"]["to_settled"].append(answered - b["submitted_at"])
                times["plain"]["to_paid"].append(b["paid_at"] - b["submitted_at"])
                times["plain_start"]["work_starts"].append(p["started_at"] - b["submitted_at"])
                split(times["plain_split"], b, p, answered)
                b, p = await one(escrow_settings)
                split(times["escrow_split"], b, p, p["hold_settled_at"])
                assert b["payments"] and next(iter(b["payments"].values()))["escrow"], b
                times["escrow"]["to_funded"].append(
                    next(iter(b["funding"].values()))["at"] - b["submitted_at"])
                times["escrow"]["to_verified"].append(b["verified_at"] - b["submitted_at"])
                times["escrow"]["to_settled"].append(p["hold_settled_at"] - b["submitted_at"])
                for part, at in (("received", p["received_at"]),
                                 ("hold_asked", p["hold_asked_at"]),
                                 ("hold_made", p["hold_made_at"]),
                                 ("buyer_pays", next(iter(b["funding"].values()))["at"]),
                                 ("work_starts", p["started_at"])):
                    times["escrow"][part].append(at - b["submitted_at"])
                times["bare"]["docker_run_true"].append(
                    await anyio.to_thread.run_sync(bare_true_once, image))
            tg.cancel_scope.cancel()
    finally:
        buyer.settings = original
    return {mode: {k: round(med(v) * 1000, 1) for k, v in parts.items()}
            for mode, parts in times.items()}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    image = build_base_image(connect(timeout=30))
    tmp = Path(tempfile.mkdtemp(prefix="oa-bench-market-"))
    relay = RelayProcess(tmp / "relay.sqlite3", extra=["--no-rate-limits"])
    relay.start()
    ledger = Ledger(tmp / "wallet.sqlite3")
    conns = {}
    for name, deposit in (("pylon", 0), ("buyer", 10**12)):
        conn, secret = ledger.create_connection(name)
        if deposit:
            ledger.deposit(name, deposit)
        from oa_node.nostr import nip47

        conns[name] = nip47.ConnectionURI(conn.service_pubkey, (relay.url,), secret).to_uri()
    out: dict[str, Any] = {}
    try:
        wpool = RelayPool([relay.url])
        service = WalletService(ledger, wpool, refresh_interval=0.2, rate_per_minute=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            await service.ready.wait()
            pnode = build(node_config(tmp / "pylon", relay.url, image, wallet_uri=conns["pylon"],
                                      provider={"concurrency": os.cpu_count() or 1,
                                                "queue_bound": args.throughput + 8,
                                                "price_msat": 1000}))
            bnode = build(node_config(tmp / "buyer", relay.url, image, buyer={},
                                      wallet_uri=conns["buyer"]))
            buyer = Buyer(bnode, BuyerSettings.from_section(bnode.config["buyer"]))
            pk = pnode.signer.public_key
            async with running(pnode):
                await wait_announced(relay.url, pk)
                pledger = open_provider_ledger(pnode.data_dir)
                # warm-up (first container start, wallet info, connections)
                warm = await buyer.submit(SCHEMA, DOC, providers=[pk])
                await buyer.run(only=[warm], stop_when_done=True)
                parts: dict[str, list[float]] = {k: [] for k in (
                    "relay_in", "queue", "sandbox", "provider_out", "relay_out",
                    "verification", "to_verified", "to_paid")}
                for _ in range(args.jobs):
                    job = await buyer.submit(SCHEMA, DOC, providers=[pk])
                    await buyer.run(only=[job], stop_when_done=True)
                    b = buyer.ledger.get(job).data  # type: ignore[union-attr]
                    p = pledger.get(job).data  # type: ignore[union-attr]
                    parts["relay_in"].append(p["received_at"] - b["submitted_at"])
                    parts["queue"].append(p["started_at"] - p["received_at"])
                    parts["sandbox"].append(p["exec_secs"])
                    # finished_at: result invoiced and signed, about to be published
                    parts["provider_out"].append(p["finished_at"] - p["started_at"]
                                                 - p["exec_secs"])
                    parts["relay_out"].append(b["first_result_at"] - p["finished_at"])
                    parts["verification"].append(b["verify_secs"])
                    parts["to_verified"].append(b["verified_at"] - b["submitted_at"])
                    parts["to_paid"].append(b["paid_at"] - b["submitted_at"])
                out["latency_ms"] = {k: round(med(v) * 1000, 1) for k, v in parts.items()}
                out["settlement_ms"] = await settlement(buyer, pledger, pk, args.jobs, image)
                # throughput
                t0 = time.perf_counter()
                jobs = [await buyer.submit(SCHEMA, DOC, providers=[pk])
                        for _ in range(args.throughput)]
                submitted = time.perf_counter() - t0
                await buyer.run(only=jobs, stop_when_done=True)
                elapsed = time.perf_counter() - t0
                states = [buyer.ledger.get(j).state for j in jobs]  # type: ignore[union-attr]
                out["throughput"] = {
                    "jobs": args.throughput, "paid": states.count("paid"),
                    "submit_secs": round(submitted, 2), "total_secs": round(elapsed, 2),
                    "jobs_per_sec": round(args.throughput / elapsed, 2),
                    "concurrency": os.cpu_count() or 1}
                pledger.close()
            await buyer.node.capability(Wallet).close()
            await bnode.pool.close()
            buyer.close()
            tg.cancel_scope.cancel()
        await wpool.close()
    finally:
        relay.stop()
        ledger.close()
    out["bare_docker_run_ms"] = round(bare_docker_ms(image, max(3, args.jobs // 2)), 1)
    bare_true = bare_docker_ms(image, max(3, args.jobs), ("true",))
    out["bare_docker_run_true_ms"] = round(bare_true, 1)
    st = out["settlement_ms"]
    beside = st["bare"]["docker_run_true"]  # measured between the settlement jobs
    out["settlement_ratios"] = {
        "plain_to_settled_over_bare_true": round(st["plain"]["to_settled"] / beside, 2),
        "plain_to_paid_over_bare_true": round(st["plain"]["to_paid"] / beside, 2),
        "escrow_to_settled_over_bare_true": round(st["escrow"]["to_settled"] / beside, 2),
        "escrow_minus_plain_to_settled_ms": round(st["escrow"]["to_settled"]
                                                  - st["plain"]["to_settled"], 1),
        # what escrow adds before work starts (the target: at most 50 ms)
        "escrow_minus_plain_work_starts_ms": round(st["escrow"]["work_starts"]
                                                   - st["plain_start"]["work_starts"], 1),
    }
    lat = out["latency_ms"]
    out["ratios"] = {
        "to_verified_over_sandbox": round(lat["to_verified"] / lat["sandbox"], 2),
        "to_verified_over_bare_docker": round(lat["to_verified"] / out["bare_docker_run_ms"],
                                              2),
        "sandbox_over_bare_docker": round(lat["sandbox"] / out["bare_docker_run_ms"], 2),
    }
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10, help="sequential jobs for latency")
    ap.add_argument("--throughput", type=int, default=50, help="jobs for throughput")
    result = anyio.run(main, ap.parse_args())
    print(json.dumps(result, indent=2))
