"""Packaging: the wheel holds every package under ``oa_node`` only, and a real third-party
plugin distribution installed beside it is loaded through the entry-point group."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_FOLDERS = {"oa_node": "oa_node", "plugins": "oa_node/plugins",
                   "executors": "oa_node/executors", "sandbox": "oa_node/sandbox"}

pytestmark = pytest.mark.slow


def run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: setuptools' in-tree build/ folder would otherwise carry
    # modules deleted since the last build into the wheel (and litter the checkout).
    src = tmp_path_factory.mktemp("src") / "oa-node"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache",
        ".ruff_cache", ".hypothesis", "benchmarks"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src)
    (found,) = out.glob("oa_node-*.whl")
    return found


def test_wheel_holds_every_package_under_oa_node_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"oa_node"}, tops
    for folder, installed in PACKAGE_FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).as_posix()
            assert f"{installed}/{rel}" in names, f"{folder}/{rel} missing from the wheel"
    test_code = [n for n in names if n.endswith(".py")
                 and b"import pytest" in zipfile.ZipFile(wheel).read(n)]
    assert not test_code, f"test-only code in the wheel: {test_code}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[oa_node.plugins]" in text and "oa-node = oa_node.main:main" in text


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "oa-node-hello"
version = "1.2.3"

[project.entry-points."oa_node.plugins"]
hello = "oa_node_hello"
"""

PLUGIN_MODULE = '''
"""A third-party plugin: one command and one config section."""
import typer
from oa_node.config import Key, Section
from oa_node.hookspecs import hookimpl


@hookimpl
def register_commands(app):
    @app.command()
    def hello(name: str = "world") -> None:
        """Say hello."""
        typer.echo(f"hello, {name}, from a plugin")


@hookimpl
def register_config(register):
    register(Section("hello", keys=[Key("greeting", str, "hi", "What to say.")]))
'''


def test_third_party_plugin_in_a_fresh_virtualenv(wheel: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "oa-node-hello"
    plugin.mkdir()
    (plugin / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (plugin / "oa_node_hello.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run(py, "-m", "pip", "install", "-q", wheel, env=env)
    run(py, "-m", "pip", "install", "-q", plugin, env=env)
    oa = env_dir / "bin" / "oa-node"

    listed = json.loads(run(oa, "plugins", "--json", cwd=tmp_path, env=env).stdout)
    hello = next(p for p in listed["loaded"] if p["name"] == "hello")
    assert hello["distribution"] == "oa-node-hello" and hello["version"] == "1.2.3"
    assert "register_commands" in hello["hooks"]
    assert not listed["failed"]
    builtins = {p["name"] for p in listed["loaded"]} - {"hello"}
    assert builtins, "built-in plugins load through the same entry points"

    out = run(oa, "hello", "--name", "nostr", cwd=tmp_path, env=env).stdout
    assert out.strip() == "hello, nostr, from a plugin"
    example = run(oa, "config", "example", cwd=tmp_path, env=env).stdout
    assert "[hello]" in example and 'greeting = "hi"' in example

    # Disabling it through the environment removes its command.
    env_off = env | {"OA_NODE_DISABLE_PLUGINS": "hello"}
    gone = subprocess.run([str(oa), "hello"], cwd=tmp_path, env=env_off, capture_output=True,
                          text=True, timeout=120, check=False)
    assert gone.returncode == 2 and "No such command" in gone.stderr
