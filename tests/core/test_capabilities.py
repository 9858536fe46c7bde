"""Capabilities are keyed by the core Protocol they provide, and a plugin reads only its own
config sections (what it needs of another plugin comes as a capability) (#20)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from oa_node.agent import AgentState
from oa_node.config import validate
from oa_node.executors.jobtype import Execution
from oa_node.node import Node, build_node, core_sections
from oa_node.plugin_manager import PluginHost, load_plugins
from oa_node.trajectory import Trajectories
from oa_node.wallet import Wallet, Zapper

ROOT = Path(__file__).resolve().parents[2]


class FakeWallet:
    """Implements Wallet's methods (nothing is called: only the keying is under test)."""

    async def make_invoice(self, *a: Any, **k: Any) -> Any: ...
    async def pay_invoice(self, *a: Any, **k: Any) -> Any: ...
    async def lookup_invoice(self, *a: Any, **k: Any) -> Any: ...
    async def get_balance(self) -> int: ...  # type: ignore[empty-body]
    async def wait_settled(self, *a: Any, **k: Any) -> Any: ...
    async def supports_holds(self) -> bool: ...  # type: ignore[empty-body]
    async def make_hold_invoice(self, *a: Any, **k: Any) -> Any: ...
    async def settle_hold_invoice(self, *a: Any, **k: Any) -> None: ...
    async def cancel_hold_invoice(self, *a: Any, **k: Any) -> None: ...
    async def wait_accepted(self, *a: Any, **k: Any) -> Any: ...


def bare_node(tmp_path: Path) -> Node:
    cfg = validate(core_sections(), {"node": {"data_dir": str(tmp_path)}})
    return Node(cfg, PluginHost())


def test_capabilities_are_keyed_by_protocol_and_name(tmp_path: Path) -> None:
    node = bare_node(tmp_path)
    default, spend = FakeWallet(), FakeWallet()
    node.provide(Wallet, default)
    node.provide(Wallet, spend, "spend")
    assert node.capability(Wallet) is default and node.capability(Wallet, "spend") is spend
    assert node.capability(Wallet, "other") is None and node.capability(Zapper) is None
    with pytest.raises(ValueError, match="Wallet 'spend' provided twice"):
        node.provide(Wallet, FakeWallet(), "spend")
    with pytest.raises(TypeError, match="does not provide Zapper"):
        node.provide(Zapper, default)  # a runtime-checkable Protocol is checked
    with pytest.raises(TypeError, match="keyed by the Protocol"):
        node.capability("wallet")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keyed by the Protocol"):
        node.provide("wallet", default)  # type: ignore[arg-type]


def test_builtin_plugins_provide_their_capabilities(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[sandbox]\nmax_memory_mb = 256\n'
                   'workdir = "jobs"\n')
    node = build_node(cfg)
    execution = node.capability(Execution)
    assert isinstance(execution, Execution)
    settings = execution.executor_settings()
    assert settings.max_limits.memory_mb == 256 and settings.workdir == tmp_path / "jobs"
    assert execution.executor_settings(tmp_path / "x").workdir == tmp_path / "x"
    assert isinstance(node.capability(Trajectories), Trajectories)
    assert isinstance(node.capability(AgentState), AgentState)
    assert isinstance(node.capability(Zapper), Zapper)
    cfg.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[plugins]\ndisable = ["sandbox"]\n')
    assert build_node(cfg).capability(Execution) is None


def _sections_by_plugin() -> dict[str, set[str]]:
    host = load_plugins()
    owned: dict[str, set[str]] = {}
    for impl in host.hook.register_config.get_hookimpls():
        found: list[Any] = []
        impl.function(register=found.append)
        owned[impl.plugin_name] = {s.name for s in found}
    return owned


def _section_reads(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """``<...config...>["name"]`` and ``<...config...>.get("name")`` for ``names``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        key: ast.expr | None = None
        target: ast.expr | None = None
        if isinstance(node, ast.Subscript):
            key, target = node.slice, node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args):
            key, target = node.args[0], node.func.value
        if (isinstance(key, ast.Constant) and key.value in names and target is not None
                and "config" in ast.unparse(target)):
            out.append((node.lineno, str(key.value)))
    return out


def test_no_plugin_reads_another_plugins_config_section() -> None:
    owned = _sections_by_plugin()
    offences = []
    for plugin, mine in owned.items():
        folder = ROOT / "plugins" / plugin
        if not folder.is_dir():
            continue
        foreign = set().union(*(s for p, s in owned.items() if p != plugin)) - mine
        for path in folder.rglob("*.py"):
            for line, name in _section_reads(ast.parse(path.read_text()), foreign):
                offences.append(f"{path.relative_to(ROOT)}:{line} reads [{name}]")
    assert offences == []
