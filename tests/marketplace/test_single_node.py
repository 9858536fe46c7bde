"""One ``oa-node start`` runs both roles against its own relay: relay, ledger wallet (NIP-47),
provider and buyer in a single process. The provider earns into the default ``[wallet]``, the
buyer pays from the ``[wallet.accounts]`` entry ``spend`` (the ledger wallet refuses a payment
from a connection to itself, so the roles need separate accounts). Wallets are made with
``oa-node wallet create/deposit``; the job goes in through ``oa-node job submit --wait``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oa_node.cli import make_app
from oa_node.config import ConfigError
from oa_node.errors import UserError
from oa_node.node import build_node
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.wallet import Wallet
from tests.marketplace.conftest import free_port
from tests.marketplace.test_cli import cli, poll, start, stop, wait_port
from tests.marketplace.world import PASSING, PYTEST, both_roles_config, make_repo, write_config

PRICE = 3_000
DEPOSIT = 100_000


def wallet_json(cfg: Path, *args: str) -> Any:
    return json.loads(cli("wallet", *args, "--json", "-c", str(cfg)).stdout)


@pytest.mark.docker
def test_one_node_with_both_roles_runs_the_whole_loop(tmp_path: Path, sandbox_image: str
                                                      ) -> None:
    port = free_port()
    folder = tmp_path / "node"
    cfg = both_roles_config(folder, port, sandbox_image, cli, name="both", price=PRICE,
                            deposit=DEPOSIT)
    passing = make_repo(tmp_path / "passing", PASSING)
    log = tmp_path / "node.log"
    node = start(cfg, log)
    try:
        wait_port(port, node, log)
        started = set(re.findall(r"starting service (\S+)", log.read_text()))
        assert {"relay", "ledger_wallet", "wallet", "provider", "buyer"} <= started, started

        def announced() -> list[dict[str, Any]]:
            return json.loads(cli("providers", "--json", "--timeout", "3", "-c",
                                  str(cfg)).stdout)

        (ad,) = poll(announced, 60, "the node's own provider announcement")
        assert ad["name"] == "both"

        out = cli("job", "submit", "sandbox_run", "--repo", passing, "--ref", "main",
                  "--cmd", PYTEST, "--provider", ad["npub"], "--wait", "--wait-timeout", "150",
                  "-c", str(cfg), timeout=200)
        assert "paid" in out.stdout, out.stdout
        (listed,) = json.loads(cli("job", "list", "--json", "-c", str(cfg)).stdout)
        job = json.loads(cli("job", "status", listed["id"], "--json", "-c", str(cfg)).stdout)
        assert job["state"] == "paid"
        assert [h["to"] for h in job["history"]][-2:] == ["verified", "paid"]
        (result,) = job["results"]
        assert result["verdict"] == "pass" and result["payment"]["amount_msat"] == PRICE

        # the provider (same node, same key) sees its invoice settled
        ledger = open_provider_ledger(folder)
        try:
            poll(lambda: ledger.get(job["id"]).state == "paid",  # type: ignore[union-attr]
                 30, "the provider to see the payment")
        finally:
            ledger.close()
    finally:
        code = stop(node)
    assert code == 0, log.read_text()
    # money moved exactly once, from the buyer's account into the provider's
    balances = {c["name"]: c["balance_msat"] for c in wallet_json(cfg, "list")}
    assert balances == {"earn": PRICE, "spend": DEPOSIT - PRICE}
    moves = [m["delta_msat"] for m in wallet_json(cfg, "history", "spend")]
    assert moves == [-PRICE, DEPOSIT]
    assert [m["delta_msat"] for m in wallet_json(cfg, "history", "earn")] == [PRICE]


# --- configuration: accounts and wallet_account, no relay or Docker needed -----------------

URI = ("nostr+walletconnect://" + "b8" * 32 + "?relay=ws%3A%2F%2F127.0.0.1%3A9&secret="
       + "71" * 32)


def test_accounts_are_capabilities_next_to_the_default_wallet(tmp_path: Path) -> None:
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "b.uri").write_text(URI + "\n")
    (tmp_path / "n" / "b.uri").chmod(0o600)  # secrets are refused when not 0600
    cfg = write_config(tmp_path / "n", {
        "node": {"data_dir": ".", "relays": ["ws://127.0.0.1:9"]},
        "wallet": {"backend": "none", "accounts": {"a": URI, "b": {"uri_file": "b.uri"}}},
        "provider": {"enabled": True, "wallet_account": "a"},
        "buyer": {"enabled": True, "wallet_account": "b"},
    })
    node = build_node(cfg)
    assert node.capability(Wallet) is None  # backend "none": no default, accounts still
    a, b = node.capability(Wallet, "a"), node.capability(Wallet, "b")
    assert a is not None and b is not None and a is not b
    assert "71" * 32 not in repr(a)
    # `config check` never prints the account URIs
    shown = CliRunner().invoke(make_app(), ["config", "check", "--json", "-c", str(cfg)])
    assert shown.exit_code == 0 and "71" * 32 not in shown.output
    assert json.loads(shown.output)["config"]["wallet"]["accounts"] == "***"


@pytest.mark.parametrize("role", ["provider", "buyer"])
def test_a_missing_wallet_account_stops_the_start_in_one_line(tmp_path: Path,
                                                              role: str) -> None:
    cfg = write_config(tmp_path / "n", {
        "node": {"data_dir": ".", "relays": ["ws://127.0.0.1:9"]},
        "wallet": {"backend": "nwc", "uri": URI, "accounts": {"other": URI}},
        role: {"enabled": True, "wallet_account": "spend"},
    })
    with pytest.raises(ConfigError) as err:
        build_node(cfg)
    assert err.value.key == f"{role}.wallet_account" and "'spend'" in str(err.value)
    out = cli("start", "-c", str(cfg), check=False, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert f"{role}.wallet_account" in line and "[wallet.accounts]" in line


def test_the_buyer_cli_checks_its_account_too(tmp_path: Path) -> None:
    """With the buyer service off, `job` commands still pay from the named account: a
    missing one is refused before anything is published."""
    cfg = write_config(tmp_path / "n", {
        "node": {"data_dir": ".", "relays": ["ws://127.0.0.1:9"]},
        "buyer": {"wallet_account": "spend"},
    })
    result = CliRunner().invoke(make_app(), ["job", "submit", "sandbox_run", "--cmd", "true",
                                             "-c", str(cfg)])
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    assert result.exception.key == "buyer.wallet_account"


@pytest.mark.parametrize("accounts, key, message", [
    ({"a b": URI}, "wallet.accounts.a b", "account name"),
    ({"x": 5}, "wallet.accounts.x", "URI string or { uri_file"),
    ({"x": {"uri": URI}}, "wallet.accounts.x", "URI string or { uri_file"),
    ({"x": ""}, "wallet.accounts.x", "empty"),
    ({"x": URI.replace("secret=", "s=")}, "wallet.accounts.x", "not a valid connection URI"),
    ({"x": {"uri_file": "missing.uri"}}, None, "cannot read"),
])
def test_bad_accounts_are_one_line_errors_without_the_secret(
        tmp_path: Path, accounts: dict[str, Any], key: str | None, message: str) -> None:
    cfg = write_config(tmp_path / "n", {
        "node": {"data_dir": ".", "relays": ["ws://127.0.0.1:9"]},
        "wallet": {"backend": "none", "accounts": accounts},
    })
    with pytest.raises(UserError) as err:
        build_node(cfg)
    assert message in str(err.value) and "71" * 32 not in str(err.value)
    if key is not None:
        assert isinstance(err.value, ConfigError) and err.value.key == key
