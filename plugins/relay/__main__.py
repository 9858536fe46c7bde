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
from typing import TYPE_CHECKING

from oa_node.config import ConfigError
from oa_node.plugins.relay import build_relay
from oa_node.plugins.relay.server import tune_interpreter
from oa_node.plugins.relay.settings import RateLimits
from oa_node.redact import install_log_redaction, redact
from oa_node.store import StoreError

if TYPE_CHECKING:
    from oa_node.node import Node


def relay_config(path: str | None) -> Node:
    """A node (never started) over ``path`` or the embedded defaults: its config and the
    loaded plugins, whose relay policies this relay runs as ``oa-node start`` would."""
    from oa_node.node import build_node

    node = build_node(path, services=False)
    if "relay" not in node.config:
        raise ConfigError(path, "relay", "the relay plugin is disabled ([plugins] disable)")
    return node


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
    node = relay_config(config)
    table = node.config["relay"]  # the command line wins over the file
    table.update(host=host, port=port, storage="postgres" if postgres else "sqlite",
                 postgres_dsn=postgres, sqlite_path=str(Path(db).expanduser().resolve()))
    if no_rate_limits:
        table["rate_limits"] = dict(vars(RateLimits.off()))
    server = build_relay(node.config, node.plugins, node.data_dir)
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
