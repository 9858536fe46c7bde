"""Start-up stays light (#18): ``oa-node version`` loads no plugin and no CLI framework,
``oa-node --help`` lists every command group without importing the groups' modules, and
a lazy group still works once used. (Times are measured by ``benchmarks/cli.py``, never
asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, sys
sys.argv = ["oa-node", *json.loads(sys.argv[1])]
from oa_node.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit:
        pass
sys.stderr.write(json.dumps({"modules": sorted(sys.modules), "out": out.getvalue()}))
"""


def run(*args: str) -> dict:  # type: ignore[type-arg]
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))],
                         capture_output=True, text=True, timeout=120)
    return json.loads(res.stderr.splitlines()[-1])  # type: ignore[no-any-return]


def test_version_loads_no_plugin_and_no_cli_framework() -> None:
    got = run("version")
    assert got["out"] == "oa-node 0.1.0\n"
    loaded = set(got["modules"])
    assert not loaded & {"typer", "rich", "pluggy", "oa_node.cli", "oa_node.plugin_manager"}
    assert json.loads(run("version", "--json")["out"]) == {"version": "0.1.0"}


HEAVY = ["git", "docker", "pydantic", "asyncpg", "websockets", "coincurve",
         "oa_node.plugins.gitafter.cli", "oa_node.plugins.buyer.cli",
         "oa_node.plugins.sandbox.cli", "oa_node.plugins.relay.server",
         "oa_node.client.cli", "oa_node.client.negsync", "oa_node.keys_cli",
         "oa_node.plugins.nipsa.cli", "oa_node.plugins.buyer.settings",
         "oa_node.plugins.frostr.cli", "oa_node.plugins.ledger_wallet.cli"]


def test_help_lists_every_group_without_importing_them() -> None:
    got = run("--help")
    for name in ("keys", "config", "relay", "job", "providers", "frost", "git", "wallet",
                 "agent", "sandbox", "zap", "init", "start"):
        assert f"\n  {name} " in got["out"], name
    assert not set(got["modules"]) & set(HEAVY), set(got["modules"]) & set(HEAVY)


@pytest.mark.parametrize("group, commands", [
    ("relay", ["serve", "sync", "query", "publish", "info"]),  # serve, sync: relay plugin
    ("job", ["submit", "result", "list", "status"]),
    ("sandbox", ["run", "doctor", "build-image"]),
])
def test_a_lazy_group_works_once_used(group: str, commands: list[str]) -> None:
    got = run(group, "--help")
    for name in commands:
        assert f" {name} " in got["out"] or f"│ {name} " in got["out"], (name, got["out"])
