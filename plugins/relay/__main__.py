"""``python -m oa_node.plugins.relay``: one relay process (restart tests, benchmarks, ops).

SIGTERM/SIGINT shut it down gracefully: every event already acknowledged is committed (it
was before its OK), pending ones are committed and answered, then connections close.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from oa_node.config import ConfigError, read_toml, validate
from oa_node.plugins.relay.server import RelayServer, tune_interpreter
from oa_node.plugins.relay.settings import RateLimits, RelaySettings, relay_section
from oa_node.plugins.relay.storage import open_store
from oa_node.redact import install_log_redaction, redact
from oa_node.store import StoreError


def settings_from_file(path: str | None) -> RelaySettings:
    if path is None:
        return RelaySettings()
    raw, text = read_toml(Path(path))
    cfg = validate([relay_section()], {"relay": raw.get("relay", {})}, Path(path), text)
    return RelaySettings.from_section(cfg["relay"])


async def run(
    *,
    host: str = "127.0.0.1",
    port: int = 7447,
    db: str = "relay.sqlite3",
    postgres: str | None = None,
    config: str | None = None,
    no_rate_limits: bool = False,
    ready_file: str | None = None,
) -> None:
    tune_interpreter()
    settings = settings_from_file(config)
    settings.host, settings.port = host, port
    if no_rate_limits:
        settings.rate_limits = RateLimits.off()
    store = open_store("postgres" if postgres else "sqlite", sqlite_path=db, postgres_dsn=postgres)
    server = RelayServer(store, None, settings)
    bound = await server.start()
    print(f"relay listening on ws://{host}:{bound}", flush=True)
    if ready_file:
        Path(ready_file).write_text(str(bound))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oa_node.plugins.relay", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7447, help="0 picks a free port")
    ap.add_argument("--db", default="relay.sqlite3", help="SQLite file")
    ap.add_argument("--postgres", metavar="DSN", help="use PostgreSQL instead of SQLite")
    ap.add_argument("--config", help="a TOML file with a [relay] section (limits, auth...)")
    ap.add_argument("--no-rate-limits", action="store_true", help="disable token buckets")
    ap.add_argument("--ready-file", help="write the bound port here once listening")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    try:
        asyncio.run(
            run(
                host=args.host,
                port=args.port,
                db=args.db,
                postgres=args.postgres,
                config=args.config,
                no_rate_limits=args.no_rate_limits,
                ready_file=args.ready_file,
            )
        )
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except (StoreError, OSError, ValueError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
