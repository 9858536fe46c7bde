"""``relay query`` says why a relay gave nothing, and can authenticate (#18): a relay that
requires NIP-42 for reads closes the query with ``auth-required`` (printed, exit 1) unless
``--key-file`` is given; a NOTICE is printed with exit 1; ``providers`` exits 1 when no
relay answered; the relay's NIP-11 ``software``/``version`` are its own and configurable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.server import ServerConnection

from harness.relay import RelayProcess
from harness.wait import free_port
from oa_node import __version__
from oa_node.plugins.relay.nip11 import info_document
from oa_node.plugins.relay.settings import RelaySettings
from oa_node.signer import LocalSigner, write_key_file

from .conftest import raw_server, recv_json


def oa(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def auth_relay(tmp_path: Path) -> Iterator[str]:
    cfg = tmp_path / "relay.toml"
    cfg.write_text('[relay.auth]\nrequired_for = ["read"]\n')
    rp = RelayProcess(tmp_path / "relay.db", extra=["--no-rate-limits", "--config", str(cfg)])
    rp.start()
    try:
        yield rp.url
    finally:
        rp.stop()


def test_query_needs_the_key_when_the_relay_requires_auth(auth_relay: str,
                                                           tmp_path: Path) -> None:
    signer = LocalSigner.generate()
    key = write_key_file(tmp_path / "node.key", signer.secret_key)
    pub = oa("relay", "publish", "-r", auth_relay, "--kind", "1", "--content", "secret-ish",
             "--key-file", str(key), "--json")
    assert pub.returncode == 0, pub.stderr
    event_id = json.loads(pub.stdout)["id"]

    refused = oa("relay", "query", "-r", auth_relay, "--id", event_id, "--json")
    assert refused.returncode == 1 and refused.stdout == "", refused
    assert f"{auth_relay}: CLOSED: auth-required" in refused.stderr
    assert "Traceback" not in refused.stderr

    allowed = oa("relay", "query", "-r", auth_relay, "--id", event_id, "--json",
                 "--key-file", str(key))
    assert allowed.returncode == 0, allowed.stderr
    assert [json.loads(ln)["id"] for ln in allowed.stdout.splitlines()] == [event_id]


@pytest.mark.anyio
async def test_a_notice_is_printed_with_exit_1() -> None:
    async def handler(ws: ServerConnection) -> None:
        req = await recv_json(ws)
        await ws.send(json.dumps(["NOTICE", "too many filters, slow down"]))
        await ws.send(json.dumps(["EOSE", req[1]]))
        await ws.wait_closed()

    async with raw_server(handler) as url:
        res = await anyio.run_process([sys.executable, "-m", "oa_node.cli", "relay", "query",
                                       "-r", url, "-k", "1"], check=False)
    err = res.stderr.decode()
    assert res.returncode == 1, err
    assert f"{url}: NOTICE: too many filters, slow down" in err and "Traceback" not in err
    assert res.stdout.decode() == "no events\n"


def test_providers_exits_1_when_no_relay_answered(tmp_path: Path) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    made = oa("init", str(tmp_path / "n"), "--no-relay", "--relay", dead)
    assert made.returncode == 0, made.stderr
    res = oa("providers", "-c", str(tmp_path / "n" / "node.toml"), "--timeout", "2")
    assert res.returncode == 1, res
    assert "no relay answered" in res.stderr and dead in res.stderr
    assert "no live providers" not in res.stdout


def test_nip11_software_and_version_are_honest_and_configurable() -> None:
    doc = info_document(RelaySettings())
    assert doc["software"] == "oa-node" and doc["version"] == __version__
    settings = RelaySettings.from_section(
        {"info": {"software": "https://example.org/my-fork", "version": "1.2.3"}})
    doc = info_document(settings)
    assert doc["software"] == "https://example.org/my-fork" and doc["version"] == "1.2.3"
