"""``python -m oa_node.plugins.relay``: one relay process (restart tests, benchmarks, ops).

SIGTERM/SIGINT shut it down gracefully: every event already acknowledged is committed (it
was before its OK), pending ones are committed and answered, then connections close.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from oa_node.config import ConfigError
from oa_node.plugins.relay.standalone import run
from oa_node.redact import install_log_redaction, redact
from oa_node.store import StoreError


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
