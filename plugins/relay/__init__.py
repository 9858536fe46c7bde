"""The relay plugin ("Nexus"): turns a node into a Nostr relay for high-frequency job traffic.

Hooks: ``register_config`` declares ``[relay]`` (off by default); ``register_services``
runs the relay when enabled; ``register_commands`` adds ``oa-node relay serve``;
``register_relay_policies`` registers the built-in policies,
so they reach the relay through the same registry as third-party ones. The server is also
a library (:class:`RelayServer`) and a process (``python -m oa_node.plugins.relay``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oa_node.hookspecs import hookimpl
from oa_node.plugins.relay.settings import RelaySettings, relay_section

if TYPE_CHECKING:
    from oa_node.config import Config
    from oa_node.node import Node
    from oa_node.plugins.relay.server import RelayServer

__all__ = ["RelayServer", "RelaySettings", "build_relay", "open_store", "relay_service",
           "serve_command"]

#: the server side, imported when used (``oa-node --help`` and other commands need none)
_LAZY = {"RelayServer": "server", "tune_interpreter": "server", "build_relay": "standalone",
         "open_store": "storage", "builtin_policies": "policies"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

log = logging.getLogger("oa_node.relay")


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    register(relay_section())


@hookimpl
def register_relay_policies(config: Config, register: Callable[..., None]) -> None:
    from oa_node.plugins.relay.policies import builtin_policies

    settings = RelaySettings.from_section(config.get("relay") or {})
    for stage, fns in builtin_policies(settings).items():
        for fn in fns:
            register(stage, fn)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.cli import sub_app

    relay_app = sub_app(app, "relay")
    (relay_app or app).command("serve" if relay_app else "relay-serve")(serve_command)
    from oa_node.plugins.relay.sync_cli import sync_command

    (relay_app or app).command("sync" if relay_app else "relay-sync")(sync_command)


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    if node.config.get("relay", {}).get("enabled"):
        register("relay", relay_service)


async def relay_service(node: Node) -> None:
    """Serve until cancelled; on cancellation commit pending events and close the store."""
    from oa_node.plugins.relay.server import settle_heap, tune_interpreter
    from oa_node.relaystats import RelayStats

    tune_interpreter()
    server = await start_relay(node.config, node.plugins, node.data_dir)
    settle_heap()
    node.provide(RelayStats, _Stats(server))
    await server.serve_forever()


class _Stats:
    """:class:`oa_node.relaystats.RelayStats` over the running server."""

    def __init__(self, server: RelayServer) -> None:
        self._server = server

    async def relay_stats(self) -> dict[str, int]:
        from oa_node.nostr.filter import Filter

        s = self._server
        return {"connections": len(s.connections),
                "events_stored": await s.store.count([Filter()]),
                "events_ingested": s.events_ingested, "events_delivered": s.events_delivered}


async def start_relay(config: Config, plugins: Any, data_dir: Any) -> RelayServer:
    """Build and start the configured relay; a setup problem (the port taken, the database
    down or refusing the login) is a :class:`UserError` naming the ``[relay]`` key."""
    from oa_node.errors import UserError
    from oa_node.plugins.relay.standalone import build_relay
    from oa_node.redact import redact
    from oa_node.store import StoreError

    table = config["relay"]
    try:
        server = build_relay(config, plugins, data_dir)
    except ValueError as exc:
        raise UserError(f"[relay] storage: {exc}") from None
    try:
        await server.start()
    except StoreError as exc:
        key = "postgres_dsn" if table["storage"] == "postgres" else "sqlite_path"
        with contextlib.suppress(Exception):
            await server.close()
        raise UserError(f"[relay] {key}: {redact(str(exc))}") from None
    except OSError as exc:  # the listening socket
        with contextlib.suppress(Exception):
            await server.close()
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            why = "address already in use (another relay or node? pick another [relay] port)"
        raise UserError(f"[relay] host/port {table['host']}:{table['port']}: cannot listen: "
                        f"{why}") from None
    return server


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7447,
    db: Annotated[str, typer.Option(help="SQLite database file.")] = "relay.sqlite3",
    postgres: Annotated[str | None, typer.Option(
        help="PostgreSQL DSN (instead of SQLite).")] = None,
    config: Annotated[str | None, typer.Option(
        help="A node.toml whose relay section (limits, auth, info) and plugins' sections "
        "to use.")] = None,
) -> None:
    """Run a relay in the foreground without a node's other roles (Ctrl-C stops it); the
    plugins' relay policies apply as under `oa-node start`."""
    import asyncio

    from oa_node.errors import UserError
    from oa_node.plugins.relay.standalone import run
    from oa_node.store import StoreError

    try:
        asyncio.run(run(host=host, port=port, db=db, postgres=postgres, config=config))
    except (StoreError, OSError, ValueError) as exc:  # unreachable database, port in use
        raise UserError(f"relay: {exc}") from None
