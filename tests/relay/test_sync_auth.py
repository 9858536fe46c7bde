"""``oa-node relay sync`` with relays that require NIP-42 auth (real relay processes).

Both relays require AUTH for reads and writes, so NEG-OPEN, the REQs fetching events and
the EVENTs copying them are each refused ``auth-required:`` until the sync answers the
challenge with the node's key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.relay import RelayProcess
from harness.sync_seed import ids_in, seed_pair
from oa_node.signer import LocalSigner

REPO = Path(__file__).resolve().parents[2]
AUTH_CONFIG = '[relay.auth]\nrequired_for = ["read", "write"]\n'


class Pair:
    """Two auth-required relays differing by ``only_a``/``only_b`` events, and the node
    config (its key, its relay = a) that syncs them."""

    def __init__(self, tmp: Path, total: int = 400, diff: float = 0.1) -> None:
        self.a_db, self.b_db = tmp / "a.db", tmp / "b.db"
        self.total = total
        self.only_a, self.only_b = seed_pair(self.a_db, self.b_db, total, diff, seed=5)
        relay_cfg = tmp / "relay.toml"
        relay_cfg.write_text(AUTH_CONFIG)
        extra = ["--no-rate-limits", "--config", str(relay_cfg)]
        self.a = RelayProcess(self.a_db, extra=extra)
        self.b = RelayProcess(self.b_db, extra=extra)
        self.node_dir = tmp / "node"
        self.node_dir.mkdir()
        self.config = self.node_dir / "node.toml"
        self.config.write_text(
            f'[node]\ndata_dir = "."\n[relay]\nhost = "127.0.0.1"\nport = {self.a.port}\n'
            f'sqlite_path = "{self.a_db}"\n')

    def give_key(self) -> None:
        key = self.node_dir / "node.key"
        key.write_text(LocalSigner.generate().secret_key.hex())
        os.chmod(key, 0o600)

    def sync(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "oa_node.cli", "relay", "sync", self.b.url,
               "-c", str(self.config), "--timeout", "20", *args]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    p.a.start()
    p.b.start()
    try:
        yield p
    finally:
        p.a.stop()
        p.b.stop()


@pytest.mark.parametrize("direction", ["down", "up", "both"])
def test_sync_authenticates_with_the_nodes_key(pair: Pair, direction: str) -> None:
    pair.give_key()
    proc = pair.sync("--direction", direction, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["local_source"] == "store"
    assert (out["have"], out["need"]) == (pair.only_a, pair.only_b)
    if direction in ("down", "both"):
        assert out["stored_locally"] == pair.only_b
    if direction in ("up", "both"):
        assert out["published"] == pair.only_a
    assert out["refused_count"] == 0
    pair.a.stop()
    pair.b.stop()
    ids_a, ids_b = ids_in(pair.a_db), ids_in(pair.b_db)
    if direction == "both":
        assert ids_a == ids_b and len(ids_a) == pair.total
    elif direction == "down":
        assert ids_b <= ids_a and len(ids_a - ids_b) == pair.only_a
    else:
        assert ids_a <= ids_b and len(ids_b - ids_a) == pair.only_b


def test_sync_through_an_auth_required_local_relay(pair: Pair) -> None:
    """--local: the local side is read by REQs, which need AUTH too."""
    pair.give_key()
    proc = pair.sync("--local", pair.a.url, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["local_source"] == "relay"
    assert out["local_count"] == pair.total - pair.only_b
    assert (out["stored_locally"], out["published"]) == (pair.only_b, pair.only_a)


@pytest.mark.parametrize("local", [False, True])
def test_without_a_key_the_refusal_is_one_line(pair: Pair, local: bool) -> None:
    proc = pair.sync(*(["--local", pair.a.url] if local else []))
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "auth-required" in proc.stderr and "no key to authenticate with" in proc.stderr
    pair.a.stop()
    pair.b.stop()
    assert len(ids_in(pair.a_db)) == pair.total - pair.only_b  # nothing lost either side
    assert len(ids_in(pair.b_db)) == pair.total - pair.only_a


def test_the_nodes_negentropy_cap_bounds_the_local_read(pair: Pair) -> None:
    pair.give_key()
    pair.config.write_text(pair.config.read_text()
                           + "[relay.limits]\nnegentropy_max_records = 50\n")
    proc = pair.sync("--direction", "down")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "more than 50 local events" in proc.stderr


@pytest.mark.postgres
def test_a_node_relay_on_postgresql_syncs_from_its_store(tmp_path: Path) -> None:
    """The node's own relay on PostgreSQL: its ids come from id_pairs on that database."""
    import asyncio
    import random

    from harness.sync_seed import _fill, make_events
    from oa_node.nostr.event import Event
    from oa_node.nostr.filter import Filter
    from oa_node.plugins.relay.storage.postgres import PostgresStore
    from tests.relay.conftest import drop_pg_schema, fresh_pg_schema, postgres_dsn

    base = postgres_dsn()
    dsn, schema = asyncio.run(fresh_pg_schema(base))
    events = make_events(300, seed=9)
    picks = random.Random(9).sample(range(300), 40)
    not_on_pg, not_on_b = set(picks[:20]), set(picks[20:])

    async def fill_pg(evs: list[Event]) -> set[str]:
        """Store ``evs``; the ids the database then holds."""
        store = PostgresStore(dsn)
        await store.open()
        try:
            for ev in evs:
                await store.save(ev, ev.to_json())
            return {eid for _, eid in await store.id_pairs(Filter())}
        finally:
            await store.close()

    try:
        asyncio.run(fill_pg([e for i, e in enumerate(events) if i not in not_on_pg]))
        b_db = tmp_path / "b.db"
        asyncio.run(_fill(b_db, [e for i, e in enumerate(events) if i not in not_on_b]))
        relay_cfg = tmp_path / "relay.toml"
        relay_cfg.write_text(AUTH_CONFIG)
        extra = ["--no-rate-limits", "--config", str(relay_cfg)]
        a = RelayProcess(tmp_path / "unused.db", extra=[*extra, "--postgres", dsn])
        b = RelayProcess(b_db, extra=extra)
        node_dir = tmp_path / "node"
        node_dir.mkdir()
        key = node_dir / "node.key"
        key.write_text(LocalSigner.generate().secret_key.hex())
        os.chmod(key, 0o600)
        config = node_dir / "node.toml"
        config.write_text(f'[node]\ndata_dir = "."\n[relay]\nhost = "127.0.0.1"\n'
                          f'port = {a.port}\nstorage = "postgres"\npostgres_dsn = "{dsn}"\n')
        a.start()
        b.start()
        try:
            cmd = [sys.executable, "-m", "oa_node.cli", "relay", "sync", b.url, "-c",
                   str(config), "--json"]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        finally:
            a.stop()
            b.stop()
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["local_source"] == "store" and out["local_count"] == 280
        assert (out["stored_locally"], out["published"]) == (20, 20)
        every = {e.id for e in events}
        assert asyncio.run(fill_pg([])) == every and ids_in(b_db) == every
    finally:
        asyncio.run(drop_pg_schema(base, schema))
