"""The node runtime: config, identity, relay pool and the services plugins registered.

``Node.run()`` starts every registered service in one anyio task group and stops them all
on SIGINT/SIGTERM (or when one of them fails), so each service gets a cancellation to close
its subscriptions and flush its stores.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from oa_node.config import Config, ConfigError, Key, Section, relay_url
from oa_node.errors import UserError
from oa_node.files import loose_modes, private_dir
from oa_node.plugin_manager import PluginHost
from oa_node.signer import LocalSigner, Signer

if TYPE_CHECKING:
    from oa_node.client import RelayPool

log = logging.getLogger("oa_node")

ServiceFn = Callable[["Node"], Awaitable[None]]
C = TypeVar("C")

DEFAULT_DATA_DIR = "~/.oa-node"


def core_sections() -> list[Section]:
    """The sections the core itself owns: ``[node]`` and ``[plugins]``."""
    return [
        Section(
            "node",
            help="The node's identity, data and the relays it talks to.",
            keys=[
                Key("name", str, "oa-node", "A human-readable name for logs and announcements."),
                Key("data_dir", str, DEFAULT_DATA_DIR,
                    "Where keys, databases and ledgers live (relative to this file)."),
                Key("key_file", str, "node.key",
                    "The node's secret key (hex or nsec), relative to data_dir; mode 0600."),
                Key("signer", str, "local",
                    'Who signs for the node: "local" (key_file) or a plugin signer'
                    ' such as "frost".'),
                Key("relays", list, [], "Relays the node publishes to and reads from.",
                    item=str, check=lambda v: [relay_url(u) for u in v] and None),
                Key("log_level", str, "info", "Logging verbosity.",
                    choices=("debug", "info", "warning", "error")),
            ],
        ),
        Section(
            "plugins",
            help="Which plugins load.",
            keys=[Key("disable", list, [], "Plugin names that must not load.", item=str)],
        ),
    ]


def _describe(kind: type, name: str) -> str:
    return f"{kind.__name__}" + (f" {name!r}" if name else "")


@dataclass
class Service:
    name: str
    fn: ServiceFn


class Node:
    """What a plugin gets: config, signer, pool, data dir, registries and services."""

    def __init__(self, config: Config, plugins: PluginHost, signer: Signer | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.data_dir = config.resolve_path(config["node"]["data_dir"])
        self._signer = signer
        self._pool: RelayPool | None = None
        self.services: list[Service] = []
        self._capabilities: dict[tuple[type, str], Any] = {}
        self._stop_event: anyio.Event | None = None

    # --- identity -------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return (self.data_dir / self.config["node"]["key_file"]).expanduser()

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = self._make_signer()
        return self._signer

    def _make_signer(self) -> Signer:
        kind = self.config["node"]["signer"]
        if kind == "local":
            return LocalSigner.from_file(self.key_path)
        factories = self.plugins.registries.signers()
        if kind not in factories:
            known = ", ".join(["local", *factories])
            raise ConfigError(self.config.path, "node.signer",
                              f"no such signer {kind!r} (known: {known})")
        return factories[kind](self.config)  # type: ignore[operator]

    # --- relays ---------------------------------------------------------------------

    @property
    def pool(self) -> RelayPool:
        """The node's relay pool over ``[node] relays``, authenticating with its signer."""
        if self._pool is None:
            from oa_node.client import RelayPool

            self._pool = RelayPool(self.config["node"]["relays"], signer=self.signer)
        return self._pool

    @pool.setter
    def pool(self, pool: RelayPool) -> None:
        """Use another pool (a CLI command given ``--relay``, a test); set before use."""
        if self._pool is not None and self._pool is not pool:
            raise RuntimeError("the node's relay pool is already in use")
        self._pool = pool

    # --- capabilities: how plugins offer each other things without importing each other --

    def provide(self, kind: type[C], obj: C, name: str = "") -> None:
        """Offer ``obj`` as a ``kind``: a Protocol defined in core (``Wallet``, ``Zapper``,
        ``Trajectories``, ``AgentState``, ``AgentRunner``, ``Execution``...); ``name`` tells
        several of a kind apart (wallet accounts). A runtime-checkable ``kind`` is checked."""
        if not isinstance(kind, type):
            raise TypeError(f"capabilities are keyed by the Protocol they provide, not "
                            f"{kind!r} (e.g. node.provide(Wallet, wallet))")
        if getattr(kind, "_is_runtime_protocol", False) and not isinstance(obj, kind):
            raise TypeError(f"{type(obj).__name__} does not provide {kind.__name__}")
        key = (kind, name)
        if key in self._capabilities:
            raise ValueError(f"capability {_describe(kind, name)} provided twice")
        self._capabilities[key] = obj

    def capability(self, kind: type[C], name: str = "") -> C | None:
        """What a plugin provided as ``kind`` (under ``name``), or ``None`` when absent."""
        if not isinstance(kind, type):
            raise TypeError(f"capabilities are keyed by the Protocol they provide, not "
                            f"{kind!r} (e.g. node.capability(Wallet))")
        return self._capabilities.get((kind, name))  # type: ignore[no-any-return]

    # --- services -------------------------------------------------------------------

    def add_service(self, name: str, fn: ServiceFn) -> None:
        if any(s.name == name for s in self.services):
            raise ValueError(f"service {name!r} registered twice")
        self.services.append(Service(name, fn))

    def collect_services(self) -> None:
        self.plugins.hook.register_services(node=self, register=self.add_service)

    def stop(self) -> None:
        """Ask a running node to stop (safe from any task in the node's loop)."""
        if self._stop_event is not None:
            self._stop_event.set()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run every service until a signal, ``stop()`` or a failing service."""
        private_dir(self.data_dir)
        extra = (self.config.path,) if self.config.path is not None else ()
        for warning in loose_modes(self.data_dir, extra):
            log.warning("%s", warning)
        self._stop_event = anyio.Event()
        if not self.services:
            log.warning("no services enabled: enable a role in the config (e.g. [relay] enabled)")
        try:
            await self._run_services(handle_signals)
        except* UserError as group:  # a setup problem (port in use, database down): the
            raise _first_user_error(group) from None  # CLI shows it as one line
        finally:
            # Also when a service failed: the pool's connections must not outlive the node.
            if self._pool is not None:
                with anyio.CancelScope(shield=True):
                    await self._pool.close()
        log.info("stopped")

    async def _run_services(self, handle_signals: bool) -> None:
        assert self._stop_event is not None
        async with anyio.create_task_group() as tg:
            if handle_signals:  # handled before any service starts (a signal then
                await tg.start(self._watch_signals)  # must stop the node, not kill it)
            for service in self.services:
                log.info("starting service %s", service.name)
                tg.start_soon(self._run_service, service, name=f"service:{service.name}")
            await self._stop_event.wait()
            log.info("stopping")
            tg.cancel_scope.cancel()

    async def _run_service(self, service: Service) -> None:
        try:
            await service.fn(self)
        except UserError as exc:  # said once, as one line, by whoever runs the node
            log.debug("service %s: %s", service.name, exc)
            self.stop()
            raise
        except Exception:
            log.exception("service %s failed; stopping the node", service.name)
            self.stop()
            raise

    async def _watch_signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                             ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                self.stop()
                return


def _first_user_error(group: BaseExceptionGroup[UserError]) -> UserError:
    """The first :class:`UserError` in a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first_user_error(first) if isinstance(first, BaseExceptionGroup) else first


def build_node(config_path: str | Path | None, *, services: bool = True,
               host: PluginHost | None = None, **overrides: Any) -> Node:
    """Load plugins and config, and build a node (services collected unless ``services``
    is false, as for CLI commands that only need the config and identity; never started).
    A node with services is about to start: its sections' checks run too. ``host`` reuses
    plugins already loaded with the same ``disable`` set (the CLI's), instead of loading
    the entry points again."""
    from oa_node import config as config_mod
    from oa_node.plugin_manager import disabled_from_env, load_plugins

    raw_disable: frozenset[str] = frozenset()
    if config_path is not None:
        raw, _ = config_mod.read_toml(Path(config_path))
        plugins_table = raw.get("plugins", {})
        if isinstance(plugins_table, dict) and isinstance(plugins_table.get("disable"), list):
            raw_disable = frozenset(str(x) for x in plugins_table["disable"])
    if host is None or host.disabled != raw_disable | disabled_from_env():
        host = load_plugins(raw_disable)  # (a CLI's host is reused: same plugins)
    sections = core_sections() + host.registries.config_sections()
    cfg = config_mod.load(config_path, sections,  # type: ignore[arg-type]
                          disabled=host.disabled, checks=services)
    node = Node(cfg, host, **overrides)
    if services:
        node.collect_services()
    return node
