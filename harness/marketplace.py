"""Marketplace nodes for tests and benchmarks: node configs, nodes running in the caller's
loop, git repositories, and a wait for a provider's announcement.

Every node is a real oa-node built the way ``build_node`` builds one (entry-point plugins,
validated config), optionally with extra in-process plugins.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from harness.wait import wait_for
from oa_node import config as config_mod
from oa_node.client import RelayPool
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


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    """A node.toml: one ``[section]`` per table, values as JSON (valid TOML for the strings,
    numbers, booleans, lists and inline tables a test writes)."""
    return "".join(f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
                   + "\n" for name, table in sections.items())


def wallet_and_frost_sections(data: Path, wallet_uri: str
                              ) -> tuple[dict[str, dict[str, Any]], str]:
    """Write ``wallet.uri`` (0600) and a 2-of-3 FROST group with share 1 into the node's
    data dir ``data``; the ``[wallet]`` and ``[frostr]`` sections that use them (paths
    relative to a config whose ``data_dir`` is ``data``), and share 1's public key (the
    node's FROST transport key)."""
    from oa_node import files
    from oa_node.plugins.frostr import encoding, frost, sharefile

    files.write_private(data / "wallet.uri", wallet_uri + "\n")
    group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
    sharefile.write_group(data / "group.txt", group)
    sharefile.write_share(data / "share-1", shares[0])
    return {
        "wallet": {"backend": "nwc", "uri_file": "data/wallet.uri", "timeout": 10.0},
        "frostr": {"enabled": True, "group": "data/group.txt", "share_file": "data/share-1",
                   "peers": [shares[1].public_key]},
    }, shares[0].public_key


def write_config(folder: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """``folder/node.toml`` with a fresh key; ``[node] data_dir`` is the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    signer = LocalSigner.generate()
    write_key_file(folder / "node.key", signer.secret_key, force=True)
    sections = {"node": {"data_dir": ".", "log_level": "debug"}, **sections}
    path = folder / "node.toml"
    path.write_text(toml_text(sections))
    return path


def both_roles_config(folder: Path, relay_port: int, sandbox_image: str,
                      cli: Callable[..., subprocess.CompletedProcess[str]], *, name: str,
                      price: int, deposit: int, buyer: dict[str, Any] | None = None,
                      extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """``folder/node.toml`` for one node with every role: its own relay on ``relay_port``,
    the ledger wallet, a provider earning into ``[wallet]`` and a buyer paying from the
    account ``spend`` (the ledger refuses a payment from a connection to itself). The two
    connections are made with ``cli`` (``oa-node ...``) before the node starts; ``spend``
    holds ``deposit``. ``buyer`` adds buyer keys, ``extra`` more sections."""
    sections: dict[str, dict[str, Any]] = {
        "node": {"data_dir": ".", "relays": [f"ws://127.0.0.1:{relay_port}"], "name": name},
        "relay": {"enabled": True, "port": relay_port},
        "ledger_wallet": {"enabled": True},
    }
    cfg = write_config(folder, sections)
    for account, uri_file in (("earn", "wallet.uri"), ("spend", "spend.uri")):
        made = json.loads(cli("wallet", "create", account, "--json", "-c", str(cfg)).stdout)
        (folder / uri_file).write_text(made["uri"] + "\n")
        (folder / uri_file).chmod(0o600)  # secrets are refused when not 0600
    deposited = json.loads(cli("wallet", "deposit", "spend", str(deposit), "--json", "-c",
                               str(cfg)).stdout)
    if deposited != {"name": "spend", "balance_msat": deposit}:
        raise AssertionError(f"oa-node wallet deposit answered {deposited}")
    return write_config(folder, {
        **sections,
        "wallet": {"backend": "nwc", "uri_file": "wallet.uri", "timeout": 10.0,
                   "accounts": {"spend": {"uri_file": "spend.uri"}}},
        "sandbox": {"image": sandbox_image, "allowed_url_schemes": ["file"]},
        "provider": {"enabled": True, "prices": {"oa.sandbox_run.v1": price},
                     "settle_poll_secs": 0.5, "lookback_secs": 0},
        "buyer": {"enabled": True, "wallet_account": "spend", "max_price_msat": 5_000,
                  "pay_retry_secs": 1.0, **(buyer or {})},
        **(extra or {}),
    })


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
        # no sampled audits unless asked: which job is sampled is random
        sections["buyer"] = {"pay_retry_secs": 1.0, "audit_rate": 0.0, **buyer}
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
        await wait_for(lambda: node._stop_event is not None, 30, "the node to start running")
        try:
            yield node
        finally:
            node.stop()


async def wait_announced(relay: str, pubkey: str, timeout: float = 60.0,
                         after: int = 0) -> None:
    """Until the provider's NIP-89 announcement (newer than ``after``) is on the relay."""
    async with RelayPool([relay]) as pool:
        await wait_for(lambda: pool.query({"kinds": [kinds.HANDLER_INFO], "authors": [pubkey],
                                           "since": after}, 5),
                       timeout, f"the announcement of {pubkey[:12]}", interval=0.2)
