"""`oa-node start`: services run in one task group and stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from harness.wait import wait_for
from oa_node.config import load
from oa_node.hookspecs import hookimpl
from oa_node.node import Node, core_sections
from oa_node.plugin_manager import PluginHost
from oa_node.signer import LocalSigner


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not seen in:\n{''.join(seen)}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_start_stops_cleanly_on_signal(tmp_path: Path, signum: signal.Signals) -> None:
    subprocess.run([sys.executable, "-m", "oa_node.cli", "init", str(tmp_path)], check=True,
                   capture_output=True, timeout=60)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oa_node.cli", "start", "--config", str(tmp_path / "node.toml")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=os.environ | {"COLUMNS": "200"},
    )
    try:
        # signals are handled before the first service starts: no grace sleep needed
        wait_for_line(proc, "starting service")
        proc.send_signal(signum)
        rest = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, rest
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


class _Plugin:
    """An in-process plugin whose service records how it ended."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def register_services(self, node: Node, register) -> None:  # type: ignore[no-untyped-def]
        async def worker(node: Node) -> None:
            self.events.append("started")
            try:
                await anyio.sleep_forever()
            finally:
                self.events.append("cleaned up")

        async def stopper(node: Node) -> None:
            await wait_for(lambda: "started" in self.events, 10, "the worker to start")
            node.stop()

        register("worker", worker)
        register("stopper", stopper)


class _Services:
    """An in-process plugin that registers the services it is given (name: coroutine)."""

    def __init__(self, **services: Callable[[Node], Awaitable[None]]) -> None:
        self.services = services

    @hookimpl
    def register_services(self, node: Node, register) -> None:  # type: ignore[no-untyped-def]
        for name, service in self.services.items():
            register(name, service)


def node_with(tmp_path: Path, plugin: object) -> Node:
    """A node in ``tmp_path`` (core config) whose only plugin is ``plugin``."""
    host = PluginHost()
    host.register(plugin, "test")
    cfg = load(None, core_sections())
    cfg.data["node"]["data_dir"] = str(tmp_path)
    node = Node(cfg, host, signer=LocalSigner.generate())
    node.collect_services()
    return node


def test_services_are_cancelled_and_clean_up(tmp_path: Path) -> None:
    plugin = _Plugin()
    node = node_with(tmp_path, plugin)
    assert [s.name for s in node.services] == ["worker", "stopper"]
    anyio.run(lambda: node.run(handle_signals=False))
    assert plugin.events == ["started", "cleaned up"]


def test_a_failing_service_stops_the_node(tmp_path: Path) -> None:
    async def boom(node: Node) -> None:
        raise RuntimeError("boom")

    async def forever(node: Node) -> None:
        await anyio.sleep_forever()

    node = node_with(tmp_path, _Services(boom=boom, forever=forever))
    with pytest.raises(BaseException) as info:
        anyio.run(lambda: node.run(handle_signals=False))
    assert "boom" in repr(info.value) or any("boom" in repr(e) for e in
                                              getattr(info.value, "exceptions", []))


def test_a_failing_service_still_closes_the_relay_pool(tmp_path: Path) -> None:
    """The pool's background connections must not outlive a node that stopped on a failure."""
    from oa_node.client import RelayPool

    async def uses_pool_then_fails(node: Node) -> None:
        node.pool.add_relay("ws://127.0.0.1:9").start()  # discard port: never answers
        raise RuntimeError("boom")

    node = node_with(tmp_path, _Services(boom=uses_pool_then_fails))
    pool = RelayPool(signer=node.signer)
    node.pool = pool
    with pytest.raises(BaseExceptionGroup) as info:
        anyio.run(lambda: node.run(handle_signals=False))
    assert info.group_contains(RuntimeError, match="boom")
    assert pool._closed
    assert pool.relays == []


def test_unknown_signer_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from oa_node.config import ConfigError

    cfg = load(None, core_sections())
    cfg.data["node"]["signer"] = "nope"
    node = Node(cfg, PluginHost())
    with pytest.raises(ConfigError, match=r"node\.signer: no such signer 'nope' \(known: local"):
        node.signer  # noqa: B018


def test_a_plugin_whose_config_hook_fails_is_reported_not_fatal() -> None:
    from oa_node.config import Key, Section

    class Broken:
        @hookimpl
        def register_config(self, register) -> None:  # type: ignore[no-untyped-def]
            raise RuntimeError("cannot declare")

    class Fine:
        @hookimpl
        def register_config(self, register) -> None:  # type: ignore[no-untyped-def]
            register(Section("fine", keys=[Key("x", int, 1)]))

    host = PluginHost()
    host.register(Broken(), "broken")
    host.register(Fine(), "fine")
    sections = host.registries.config_sections()
    assert [s.name for s in sections] == ["fine"]  # type: ignore[attr-defined]
    assert [(f.name, "cannot declare" in f.error) for f in host.failed] == [("broken", True)]
