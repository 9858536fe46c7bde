"""Event store backends for the relay: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from oa_node.store import EventStore


def open_store(
    storage: str, *, sqlite_path: str | Path | None = None, postgres_dsn: str | None = None
) -> EventStore:
    """Build (not yet open) the configured backend; raises ValueError on a bad combination."""
    if storage == "sqlite":
        if sqlite_path is None:
            raise ValueError("storage = \"sqlite\" needs a sqlite_path")
        from oa_node.plugins.relay.storage.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path)
    if storage == "postgres":
        if not postgres_dsn:
            raise ValueError("storage = \"postgres\" needs postgres_dsn (postgresql://...)")
        from oa_node.plugins.relay.storage.postgres import PostgresStore

        return PostgresStore(postgres_dsn)
    raise ValueError(f"unknown storage {storage!r} (expected \"sqlite\" or \"postgres\")")
