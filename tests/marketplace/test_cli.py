"""``oa-node start`` does the whole loop: one node runs its own relay, its own ledger wallet
(NIP-47) and the provider; a second node runs the buyer service. Jobs go in through the CLI
(``job submit``, with and without ``--wait``), and ``job status``, ``job list``,
``job cancel`` and ``providers`` read the results back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.wait import port_open, wait_until
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from tests.marketplace.conftest import REPO_ROOT, balance, free_port, wallet_uri
from tests.marketplace.world import FAILING, PASSING, PYTEST, make_repo, write_config

PRICE = 3_000


def cli(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"oa-node {' '.join(args)} -> {out.returncode}\n{out.stdout}\n"
                             f"{out.stderr}")
    return out


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "oa_node.cli", "start", "-c", str(cfg)],
                                cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return -9
    return proc.returncode


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"node exited: {log.read_text()}")
        return port_open(port)

    try:
        wait_until(listening, timeout, f"a relay on port {port}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {log.read_text()}") from None


def poll(fn: Any, timeout: float, what: str) -> Any:
    return wait_until(fn, timeout, what, interval=0.3)


@pytest.mark.docker
def test_oa_node_start_runs_the_whole_loop(tmp_path: Path, sandbox_image: str) -> None:
    port = free_port()
    relay = f"ws://127.0.0.1:{port}"
    # the provider node's own ledger wallet: connections made before it starts
    pylon_dir = tmp_path / "pylon"
    pylon_dir.mkdir()
    ledger = Ledger(pylon_dir / "ledger_wallet.db")
    provider_uri = wallet_uri(ledger, "pylon", relay)
    buyer_uri = wallet_uri(ledger, "buyer", relay, deposit=100_000)
    ledger.close()
    pylon_cfg = write_config(pylon_dir, {
        "node": {"data_dir": ".", "relays": [relay], "name": "pylon"},
        "relay": {"enabled": True, "port": port},
        "ledger_wallet": {"enabled": True},
        "wallet": {"backend": "nwc", "uri": provider_uri},
        "sandbox": {"image": sandbox_image, "allowed_url_schemes": ["file"]},
        "provider": {"enabled": True, "prices": {"oa.sandbox_run.v1": PRICE},
                     "price_msat": 1_000, "settle_poll_secs": 0.5},
    })
    buyer_cfg = write_config(tmp_path / "buyer", {
        "node": {"data_dir": ".", "relays": [relay], "name": "buyer"},
        "wallet": {"backend": "nwc", "uri": buyer_uri},
        "buyer": {"enabled": True, "max_price_msat": 5_000, "pay_retry_secs": 1.0},
    })
    passing = make_repo(tmp_path / "passing", PASSING)
    failing = make_repo(tmp_path / "failing", FAILING)
    pylon = start(pylon_cfg, tmp_path / "pylon.log")
    buyer = None
    try:
        wait_port(port, pylon, tmp_path / "pylon.log")

        def announced() -> list[dict[str, Any]]:
            out = cli("providers", "--json", "--timeout", "3", "-c", str(buyer_cfg))
            return json.loads(out.stdout)

        (ad,) = poll(announced, 60, "the provider's announcement")
        assert ad["name"] == "pylon"
        assert ad["pricing_msat"] == {"oa.sandbox_run.v1": PRICE, "oa.repo_index.v1": 1_000}
        assert set(ad["kinds"]) == {5050, 5930, 5931}
        npub = ad["npub"]

        buyer = start(buyer_cfg, tmp_path / "buyer.log")
        # 1. submitted without --wait: the buyer service verifies and pays it
        out = cli("job", "submit", "sandbox_run", "--repo", passing, "--ref", "main",
                  "--cmd", PYTEST, "--provider", npub, "--json", "-c", str(buyer_cfg))
        first = json.loads(out.stdout)
        # the running buyer service may already have taken the provider's feedback
        assert first["state"] in ("published", "feedback", "result_received"), first["state"]

        def status(job: str) -> dict[str, Any]:
            return json.loads(cli("job", "status", job[:12], "--json", "-c",
                                  str(buyer_cfg)).stdout)

        done = poll(lambda: (s := status(first["id"]))["state"] == "paid" and s, 120,
                    "the buyer service to pay job 1")
        assert [h["to"] for h in done["history"]] == [
            "published", "feedback", "result_received", "verified", "paid"]
        (result,) = done["results"]
        assert result["verdict"] == "pass" and result["payment"]["amount_msat"] == PRICE
        human = cli("job", "status", first["id"], "-c", str(buyer_cfg)).stdout
        assert "paid" in human and f"{PRICE} msat" in human and "verified -> paid" in human

        # 2. --wait in the CLI (the service follows the same job: paid exactly once),
        #    a failing suite on the dedicated kind: an honest result is paid
        out = cli("job", "submit", "sandbox_run", "--repo", failing, "--ref", "main",
                  "--cmd", PYTEST, "--provider", npub, "--dedicated-kind", "--wait",
                  "-c", str(buyer_cfg), check=False)
        # exit 3: verified and paid, and the job itself honestly failed
        assert out.returncode == 3, (out.returncode, out.stdout, out.stderr)
        assert "paid" in out.stdout and "result from" in out.stdout, out.stdout
        jobs = json.loads(cli("job", "list", "--json", "-c", str(buyer_cfg)).stdout)
        assert [j["state"] for j in jobs] == ["paid", "paid"]
        second = jobs[0]
        assert second["results"][0]["status"] == "failed"
        # (the schema column may be cut at 80 columns)
        listing = cli("job", "list", "-c", str(buyer_cfg)).stdout
        assert listing.count("paid") == 2 and "oa.sandbox_r" in listing

        # 3. a job nobody takes, cancelled (NIP-09)
        nobody = "ab" * 32
        out = cli("job", "submit", "repo_index", "--repo", passing, "--provider", nobody,
                  "--json", "-c", str(buyer_cfg))
        stray = json.loads(out.stdout)["id"]
        out = cli("job", "cancel", stray[:10], "--json", "-c", str(buyer_cfg))
        assert json.loads(out.stdout)["state"] == "cancelled"
        again = cli("job", "cancel", stray, "-c", str(buyer_cfg), check=False)
        assert again.returncode == 1 and "too late to cancel" in again.stderr

        # bad input: one clear line, exit 1
        bad = cli("job", "submit", "sandbox_run", "--cmd", "true", "--provider", "npub1xyz",
                  "-c", str(buyer_cfg), check=False)
        assert bad.returncode == 1 and "npub" in bad.stderr and "Traceback" not in bad.stderr
        missing = cli("job", "status", "ffff", "-c", str(buyer_cfg), check=False)
        assert missing.returncode == 1 and "no job" in missing.stderr

        assert stop(buyer) == 0
        buyer = None
        # the provider saw both payments settle
        pledger = open_provider_ledger(pylon_dir)
        poll(lambda: all(pledger.get(j).state == "paid"  # type: ignore[union-attr]
                         for j in (first["id"], second["id"])), 30, "provider paid")
        pledger.close()
    finally:
        if buyer is not None:
            stop(buyer)
        assert stop(pylon) == 0, (tmp_path / "pylon.log").read_text()
    ledger = Ledger(pylon_dir / "ledger_wallet.db")
    assert balance(ledger, "pylon") == 2 * PRICE
    assert balance(ledger, "buyer") == 100_000 - 2 * PRICE
    ledger.close()


@pytest.mark.parametrize("args, message", [
    (["job", "submit", "sandbox_run", "--cmd", "true", "--encrypt"],
     "--encrypt needs --provider"),
    (["job", "submit", "sandbox_run", "--cmd", "true", "--encrypt", "-k", "2",
      "--provider", "ab" * 32], "needs 2 providers"),
    (["job", "submit", "sandbox_run"], "give at least one --cmd"),
    (["job", "submit", "sandbox_run", "--cmd", "true", "--env", "NOEQUALS"],
     "expected KEY=VALUE"),
    (["job", "submit", "sandbox_run", "--cmd", "true", "--network", "bogus"],
     "invalid oa.sandbox_run.v1 request"),
    (["job", "submit", "sandbox_run", "--cmd", "true", "--provider", "npub1qqq"],
     "not a valid npub"),
    (["job", "submit", "repo_index", "--repo", "file:///x", "--index-type", "everything"],
     "invalid oa.repo_index.v1 request"),
    (["job", "status", "0123"], "no job"),
    (["job", "cancel", "0123"], "no job"),
])
def test_cli_refuses_bad_input_before_any_network(tmp_path: Path, args: list[str],
                                                   message: str) -> None:
    """In-process (no relay needed): every refusal is a UserError, i.e. one line, exit 1."""
    from typer.testing import CliRunner

    from oa_node.cli import make_app
    from oa_node.errors import UserError

    cfg = write_config(tmp_path / "n", {"node": {"data_dir": ".",
                                                 "relays": ["ws://127.0.0.1:9"]}})
    result = CliRunner().invoke(make_app(), [*args, "-c", str(cfg)])
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    assert message in str(result.exception)


def test_submit_refuses_redundancy_with_results_in_clear(tmp_path: Path) -> None:
    """``[buyer] encrypt_results = false`` and ``-k 2``: clear results could be copied and
    re-attested by anyone, so they cannot make an agreement; one line, exit 1, nothing
    published (the relay is unreachable: the refusal comes first)."""
    from typer.testing import CliRunner

    from oa_node.cli import make_app
    from oa_node.errors import UserError

    cfg = write_config(tmp_path / "n", {"node": {"data_dir": ".",
                                                 "relays": ["ws://127.0.0.1:9"]},
                                        "buyer": {"encrypt_results": False}})
    args = ["job", "submit", "sandbox_run", "--cmd", "true", "--provider", "ab" * 32]
    result = CliRunner().invoke(make_app(), [*args, "-k", "2", "-c", str(cfg)])
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    assert "results in clear" in str(result.exception)
    # redundancy 1 in clear is allowed: it gets as far as the (unreachable) relay
    result = CliRunner().invoke(make_app(), [*args, "-k", "1", "-c", str(cfg)])
    assert "results in clear" not in str(result.exception), result.output


def test_providers_needs_relays(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oa_node.cli import make_app
    from oa_node.errors import UserError

    cfg = write_config(tmp_path / "n", {"node": {"data_dir": "."}})
    result = CliRunner().invoke(make_app(), ["providers", "-c", str(cfg)])
    assert isinstance(result.exception, UserError) and "no relays" in str(result.exception)
