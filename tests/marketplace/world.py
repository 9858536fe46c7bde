"""Helpers for the marketplace tests: node configs, nodes running in the test's loop,
git repositories, and a lying sandbox plugin.

Every node is a real oa-node built the way ``build_node`` builds one (entry-point plugins,
validated config), optionally with an extra in-process plugin; providers run as the node's
``provider`` service; the buyer is driven through :class:`Buyer` directly so a test can
wait for exactly the job it submitted.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from oa_node import config as config_mod
from oa_node.client import RelayPool
from oa_node.executors.hashing import output_sha256
from oa_node.hookspecs import hookimpl
from oa_node.node import Node, core_sections
from oa_node.nostr import kinds
from oa_node.plugin_manager import load_plugins
from oa_node.signer import LocalSigner, write_key_file

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}

PASSING = {"test_math.py": "def test_add():\n    assert 1 + 1 == 2\n"}
FAILING = {"test_math.py": "def test_add():\n    assert 1 + 1 == 3\n"}
PYTEST = "python3 -m pytest -q -p no:cacheprovider"


def make_repo(path: Path, files: dict[str, str]) -> str:
    """A committed git repository; returns its file:// URL."""
    path.mkdir(parents=True)
    git = functools.partial(subprocess.run, check=True, capture_output=True, env=GIT_ENV)
    git(["git", "-C", str(path), "init", "-q", "-b", "main"])
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(["git", "-C", str(path), "add", "-A"])
    git(["git", "-C", str(path), "commit", "-qm", "init"])
    return f"file://{path}"


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(folder: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """``folder/node.toml`` with a fresh key; ``[node] data_dir`` is the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    signer = LocalSigner.generate()
    write_key_file(folder / "node.key", signer.secret_key, force=True)
    sections = {"node": {"data_dir": ".", "log_level": "debug"}, **sections}
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        lines.append("")
    path = folder / "node.toml"
    path.write_text("\n".join(lines))
    return path


def node_config(folder: Path, relay: str, image: str, *, provider: dict[str, Any] | None = None,
                buyer: dict[str, Any] | None = None, wallet_uri: str | None = None,
                extra: dict[str, dict[str, Any]] | None = None) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "node": {"data_dir": ".", "relays": [relay], "name": folder.name},
        "sandbox": {"image": image, "allowed_url_schemes": ["file", "https"],
                    "max_timeout_secs": 120, "max_memory_mb": 512},
    }
    if provider is not None:
        sections["provider"] = {"enabled": True, "lookback_secs": 0, "settle_poll_secs": 0.5,
                                **provider}
    if buyer is not None:
        sections["buyer"] = {"pay_retry_secs": 1.0, **buyer}
    if wallet_uri is not None:
        sections["wallet"] = {"backend": "nwc", "uri": wallet_uri, "timeout": 10.0}
    for name, table in (extra or {}).items():
        sections[name] = {**sections.get(name, {}), **table}
    return write_config(folder, sections)


def build(config_path: Path, plugins: Iterable[tuple[str, object]] = (),
          disable: Iterable[str] = ()) -> Node:
    """A node as ``build_node`` makes it, plus in-process ``plugins``."""
    host = load_plugins(frozenset(disable))
    for name, module in plugins:
        host.register(module, name)
    cfg = config_mod.load(config_path, core_sections() + host.registries.config_sections())
    node = Node(cfg, host)
    node.collect_services()
    return node


@asynccontextmanager
async def running(node: Node) -> AsyncIterator[Node]:
    """Run the node's services in this loop until the block ends."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(node.run, handle_signals=False))
        while node._stop_event is None:  # run() has not started yet
            await anyio.sleep(0.01)
        try:
            yield node
        finally:
            node.stop()


async def wait_announced(relay: str, pubkey: str, timeout: float = 60.0,
                         after: int = 0) -> None:
    """Until the provider's NIP-89 announcement (newer than ``after``) is on the relay."""
    async with RelayPool([relay]) as pool:
        with anyio.fail_after(timeout):
            while True:
                found = await pool.query({"kinds": [kinds.HANDLER_INFO], "authors": [pubkey],
                                          "since": after}, 5)
                if found:
                    return
                await anyio.sleep(0.2)


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition",
                   interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(interval)


# --- a provider that lies ---------------------------------------------------------------


class LyingSandboxPlugin:
    """Replaces the sandbox plugin (disable "sandbox") with one whose ``oa.sandbox_run.v1``
    executor reports every command as passed, keeping the result internally consistent
    (hashes recomputed): only a comparison with another run can catch it."""

    @hookimpl
    def register_config(self, register: Callable[..., None]) -> None:
        from oa_node.plugins.sandbox.config import sandbox_section

        register(sandbox_section())

    @hookimpl
    def register_sandboxes(self, register: Callable[..., None]) -> None:
        from oa_node.plugins.sandbox.config import make_sandbox

        register("docker", make_sandbox)

    @hookimpl
    def register_job_types(self, register: Callable[..., None]) -> None:
        import dataclasses

        from oa_node.executors.builtin import REPO_INDEX, SANDBOX_RUN
        from oa_node.executors.sandbox_run_schema import SandboxRunResult

        def lying_executor(request: Any, ctx: Any) -> Any:
            honest = SANDBOX_RUN.executor(request, ctx)
            doc = honest.to_dict()
            for run in doc["runs"]:
                run["exit_code"] = 0
            doc["status"] = "success"
            doc["provenance"]["output_sha256"] = output_sha256(doc)
            return SandboxRunResult.from_dict(doc)

        register(dataclasses.replace(SANDBOX_RUN, executor=lying_executor))
        register(REPO_INDEX)


# --- a wallet that records what the buyer asks of it ---------------------------------------


class RecordingWallet:
    """The real NWC wallet, with every ``pay_invoice`` call noted first: the one assertion
    a balance cannot make is that a payment was never even attempted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pay_calls: list[str] = []

    async def pay_invoice(self, bolt11: str, max_fee_msat: int | None = None) -> Any:
        self.pay_calls.append(bolt11)
        return await self.inner.pay_invoice(bolt11, max_fee_msat)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RecordingWalletPlugin:
    """Provides ``node.capability("wallet")`` as a :class:`RecordingWallet` over an NWC URI
    (the node's own ``[wallet]`` stays ``none``)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.wallet: RecordingWallet | None = None

    @hookimpl
    def register_services(self, node: Node, register: Callable[..., None]) -> None:
        from oa_node.plugins.nwc.client import NWCWallet

        self.wallet = RecordingWallet(NWCWallet(self.uri, timeout=10))
        node.provide("wallet", self.wallet)
