"""One relay, built one way: ``oa-node start`` (the ``relay`` service), ``oa-node relay
serve`` and ``python -m oa_node.plugins.relay`` all run :func:`build_relay`, so they serve
the same ``[relay]`` settings with the same policies, the plugins' included.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oa_node.config import ConfigError
from oa_node.plugins.relay.server import RelayServer, settle_heap, tune_interpreter
from oa_node.plugins.relay.settings import RateLimits, RelaySettings
from oa_node.plugins.relay.storage import open_store

if TYPE_CHECKING:
    from oa_node.config import Config
    from oa_node.node import Node
    from oa_node.plugin_manager import PluginHost


def store_from_config(table: dict[str, Any], data_dir: Any) -> Any:
    """The configured store; the SQLite path is relative to the node's data dir."""
    path = Path(table.get("sqlite_path") or "relay.sqlite3").expanduser()
    if not path.is_absolute():
        path = Path(data_dir) / path
    return open_store(
        table.get("storage", "sqlite"), sqlite_path=path, postgres_dsn=table.get("postgres_dsn")
    )


def build_relay(config: Config, plugins: PluginHost, data_dir: Any) -> RelayServer:
    """The relay ``[relay]`` describes, with every policy the loaded plugins register."""
    table = config["relay"]
    policies: dict[str, list[Any]] = plugins.registries.relay_policies(config)
    return RelayServer(store_from_config(table, data_dir), policies,
                       RelaySettings.from_section(table))


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
    settle_heap()
    print(f"relay listening on ws://{host}:{bound}", flush=True)
    if ready_file:
        Path(ready_file).write_text(str(bound))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


