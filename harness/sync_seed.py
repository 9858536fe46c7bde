"""Two relay databases that share most events: for NIP-77 sync tests and benchmarks."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import generate_secret_key
from oa_node.plugins.relay.storage.sqlite import SQLiteStore


async def _fill(path: Path, events: list[Event]) -> None:
    store = SQLiteStore(path)
    await store.open()
    try:
        await asyncio.gather(*(store.save(ev, ev.to_json()) for ev in events))
        await store.flush()
    finally:
        await store.close()


def make_events(total: int, seed: int = 1) -> list[Event]:
    """``total`` signed kind-1 events, timestamps spread over a year (a few per second)."""
    rnd = random.Random(seed)
    secret = generate_secret_key()
    base = 1_700_000_000
    return [
        sign_event(EventTemplate(kind=1, content=f"e{i}", tags=[],
                                 created_at=base + rnd.randrange(31_536_000)), secret)
        for i in range(total)
    ]


def fill_pair(a: Path, b: Path, events: list[Event], diff: float, seed: int = 1
              ) -> tuple[int, int]:
    """Store ``events`` in both databases, each missing its own ``diff/2`` share of them.

    Returns (only on a, only on b)."""
    rnd = random.Random(seed)
    total = len(events)
    k = int(total * diff / 2)
    picks = rnd.sample(range(total), 2 * k)
    not_on_b, not_on_a = set(picks[:k]), set(picks[k:])
    asyncio.run(_fill(a, [e for i, e in enumerate(events) if i not in not_on_a]))
    asyncio.run(_fill(b, [e for i, e in enumerate(events) if i not in not_on_b]))
    return len(not_on_b), len(not_on_a)


def seed_pair(a: Path, b: Path, total: int, diff: float, seed: int = 1) -> tuple[int, int]:
    """:func:`make_events` then :func:`fill_pair`."""
    return fill_pair(a, b, make_events(total, seed), diff, seed)


def ids_in(path: Path) -> set[str]:
    """The event ids a relay database holds (read after its relay stopped)."""
    con = sqlite3.connect(path)
    try:
        return {row[0] for row in con.execute("SELECT id FROM events")}
    finally:
        con.close()
