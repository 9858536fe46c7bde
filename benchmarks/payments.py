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
            pays = []
            for _ in range(30):
                inv = await wb.make_invoice(1000, "bench")
                t0 = time.perf_counter()
                await wa.pay_invoice(inv.bolt11)
                pays.append(time.perf_counter() - t0)
        tg.cancel_scope.cancel()
    await pool.close()
    await relay.close()
    gb, pi = statistics.median(lat) * 1000, statistics.median(pays) * 1000
    print(f"NWC get_balance round trip:     {gb:10.1f} ms median (relay on 127.0.0.1)")
    print(f"NWC pay_invoice round trip:     {pi:10.1f} ms median; ratio pay/get {pi / gb:.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_decode()
        bench_ledger(tmp)
        anyio.run(bench_nwc, tmp)


if __name__ == "__main__":
    main()
