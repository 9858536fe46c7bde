"""Payments benchmark: invoice decoding, ledger settlement, NWC round trips over a relay.

Run: ``python benchmarks/payments.py`` (starts a relay and the ledger wallet service on
127.0.0.1 in-process). Prints medians of several repetitions and ratios; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPS = 5


def median_rate(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    rates = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn(n)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench_decode() -> None:
    import bolt11 as bolt11_lib

    from oa_node.nostr import bolt11
    from oa_node.plugins.ledger_wallet.invoices import issue_invoice

    text = issue_invoice(b"\x01" * 32, 21_000, description="benchmark").bolt11

    def ours(n: int) -> None:
        for _ in range(n):
            bolt11.decode(text)

    def lib(n: int) -> None:
        for _ in range(n):
            bolt11_lib.decode(text)

    a, b = median_rate(ours, 2000), median_rate(lib, 500)
    print(f"bolt11 decode (strict, ours):   {a:10.0f}/s")
    print(f"bolt11 decode (PyPI bolt11):    {b:10.0f}/s   ratio ours/lib {a / b:.2f}")


def bench_ledger(tmp: Path) -> None:
    from oa_node.plugins.ledger_wallet.ledger import Ledger

    ledger = Ledger(tmp / "bench.db")
    ledger.create_connection("a")
    ledger.create_connection("b")
    ledger.deposit("a", 10**12)
    a, b = ledger.connection("a").id, ledger.connection("b").id

    def invoices(n: int) -> list[str]:
        return [ledger.invoice(b, 1000, description="x")["bolt11"] for _ in range(n)]

    make = median_rate(lambda n: invoices(n), 200)
    rates = []
    for _ in range(REPS):
        batch = invoices(300)
        t0 = time.perf_counter()
        for text in batch:
            ledger.pay(a, text)
        rates.append(len(batch) / (time.perf_counter() - t0))
    pay = statistics.median(rates)
    print(f"ledger make_invoice (signed):   {make:10.0f}/s")
    print(f"ledger pay (one tx, fsync):     {pay:10.0f}/s")


async def bench_nwc(tmp: Path) -> None:
    from oa_node.client import RelayPool
    from oa_node.nostr import nip47
    from oa_node.plugins.ledger_wallet.ledger import Ledger
    from oa_node.plugins.ledger_wallet.service import WalletService
    from oa_node.plugins.nwc.client import NWCWallet
    from oa_node.plugins.relay.server import RelayServer
    from oa_node.plugins.relay.settings import RateLimits, RelaySettings
    from oa_node.plugins.relay.storage.sqlite import SQLiteStore

    settings = RelaySettings(host="127.0.0.1", port=0)
    settings.rate_limits = RateLimits.off()
    relay = RelayServer(SQLiteStore(tmp / "relay.db"), None, settings)
    url = f"ws://127.0.0.1:{await relay.start()}"
    ledger = Ledger(tmp / "nwc.db")
    uris = {}
    for name in ("a", "b"):
        conn, secret = ledger.create_connection(name)
        uris[name] = nip47.ConnectionURI(conn.service_pubkey, (url,), secret)
    ledger.deposit("a", 10**12)
    pool = RelayPool([url])
    service = WalletService(ledger, pool, rate_per_minute=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run)
        await service.ready.wait()
        async with NWCWallet(uris["a"]) as wa, NWCWallet(uris["b"]) as wb:
            await wa.get_balance()
            lat = []
            for _ in range(50):
                t0 = time.perf_counter()
                await wa.get_balance()
                lat.append(time.perf_counter() - t0)
            pays: list[float] = []
            for _ in range(30):
                inv = await wb.make_invoice(1000, "bench")
                t0 = time.perf_counter()
                await wa.pay_invoice(inv.bolt11)
                pays.append(time.perf_counter() - t0)
            raw: list[float] = []
            for _ in range(30):
                inv = await wb.make_invoice(1000, "bench")
                t0 = time.perf_counter()
                await wa.request("pay_invoice", {"invoice": inv.bolt11})
                raw.append(time.perf_counter() - t0)
            await bench_waits(uris, wa)
            await bench_escrow(wa, wb)
        tg.cancel_scope.cancel()
    await pool.close()
    await relay.close()
    gb, pi = statistics.median(lat) * 1000, statistics.median(pays) * 1000
    print(f"NWC get_balance round trip:     {gb:10.1f} ms median (relay on 127.0.0.1)")
    print(f"NWC pay_invoice round trip:     {pi:10.1f} ms median; ratio pay/get {pi / gb:.2f}")
    rp = statistics.median(raw) * 1000
    print(f"NWC bare pay_invoice request:   {rp:10.1f} ms median; the already-paid lookup"
          f" costs {pi - rp:.1f} ms (ratio {pi / rp:.2f})")


async def _settle_latency(wa, wb) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds from paying until the payee's wait_settled returns; lookups it took."""
    inv = await wb.make_invoice(1000, "wait")
    before = wb.lookups
    done = anyio.Event()
    out: list[float] = []

    async def wait() -> None:
        await wb.wait_settled(inv.payment_hash, timeout=30)
        out.append(time.perf_counter())
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        while wb.lookups == before:  # listening (its first lookup went out)
            await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        t0 = time.perf_counter()
        await wa.pay_invoice(inv.bolt11)
        await done.wait()
    return out[0] - t0, wb.lookups - before


async def bench_waits(uris, wa) -> None:  # type: ignore[no-untyped-def]
    """wait_settled on NIP-47 notifications vs the same client polling every 0.5 s."""
    from oa_node.plugins.nwc.client import NWCWallet

    rows = {}
    for label, notify in (("notifications", True), ("polling 0.5 s", False)):
        async with NWCWallet(uris["b"], use_notifications=notify) as wb:
            runs = [await _settle_latency(wa, wb) for _ in range(15)]
        rows[label] = (statistics.median(r[0] for r in runs) * 1000,
                       statistics.median(r[1] for r in runs))
    n, p = rows["notifications"], rows["polling 0.5 s"]
    print(f"pay -> wait_settled, notified:  {n[0]:10.1f} ms median, {n[1]:.0f} lookups/wait")
    print(f"pay -> wait_settled, polling:   {p[0]:10.1f} ms median, {p[1]:.0f} lookups/wait;"
          f" ratio notified/polling {n[0] / p[0]:.2f}")


async def bench_escrow(wa, wb) -> None:  # type: ignore[no-untyped-def]
    """Plain (invoice, pay, settled) vs hold (hold invoice, pay, accepted, settle, payer
    answered): what escrow adds to one payment."""
    import hashlib
    import secrets

    plain, hold = [], []
    for _ in range(15):
        t0 = time.perf_counter()
        inv = await wb.make_invoice(1000, "plain")
        await wa.pay_invoice(inv.bolt11)
        await wb.wait_settled(inv.payment_hash, timeout=30)
        plain.append(time.perf_counter() - t0)

        preimage = secrets.token_bytes(32)
        t0 = time.perf_counter()
        inv = await wb.make_hold_invoice(1000, hashlib.sha256(preimage).hexdigest(), "hold")
        async with anyio.create_task_group() as tg:
            tg.start_soon(wa.pay_invoice, inv.bolt11)
            await wb.wait_accepted(inv.payment_hash, timeout=30)
            await wb.settle_hold_invoice(preimage.hex())
        hold.append(time.perf_counter() - t0)
    a, b = statistics.median(plain) * 1000, statistics.median(hold) * 1000
    print(f"plain pay, until settled:       {a:10.1f} ms median")
    print(f"hold pay, until payer answered: {b:10.1f} ms median; escrow adds {b - a:.1f} ms"
          f" (ratio {b / a:.2f})")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_decode()
        bench_ledger(tmp)
        anyio.run(bench_nwc, tmp)


if __name__ == "__main__":
    main()
