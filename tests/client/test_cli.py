"""``oa-node relay query/publish/info`` against a real relay process."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oa_node.client.cli import app
from oa_node.nostr import nip19
from oa_node.nostr.event import Event
from oa_node.signer import LocalSigner, write_key_file

from .conftest import REPO, RelayProcess, make_event

runner = CliRunner()


def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    rp = RelayProcess(tmp_path_factory.mktemp("relay") / "relay.db", extra=["--no-rate-limits"])
    rp.start()
    try:
        yield rp.url
    finally:
        rp.stop()


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, LocalSigner]:
    s = LocalSigner.generate()
    return write_key_file(tmp_path / "node.key", s.secret_key), s


def test_publish_built_event_then_query_it(relay: str, key: tuple[Path, LocalSigner]) -> None:
    key_file, signer = key
    res = invoke("publish", "--relay", relay, "--kind", "1", "--content", "hello cli",
                 "--tag", "t=oa-cli", "--key-file", str(key_file), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["results"] == [{"relay": relay, "accepted": True, "message": ""}]

    res = invoke("query", "-r", relay, "-a", nip19.npub_encode(signer.public_key),
                 "-t", "t=oa-cli", "--json")
    assert res.exit_code == 0, res.output
    events = [Event.from_json(line) for line in res.stdout.splitlines()]
    assert [e.id for e in events] == [out["id"]]
    assert events[0].content == "hello cli" and events[0].verify()
    assert ["t", "oa-cli"] in events[0].tags

    res = invoke("query", "-r", relay, "--filter", json.dumps({"ids": [out["id"]]}))
    assert res.exit_code == 0, res.output
    assert "hello cli" in res.stdout and "1 event(s)" in res.stdout


def test_publish_signed_file_and_stdin(relay: str, tmp_path: Path, signer: LocalSigner) -> None:
    ev = make_event(signer, "from a file")
    path = tmp_path / "ev.json"
    path.write_text(ev.to_json())
    res = invoke("publish", str(path), "--relay", relay)
    assert res.exit_code == 0, res.output
    assert "accepted by 1 of 1" in res.stdout

    res = invoke("publish", "-", "--relay", relay, "--json", input=ev.to_json())
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][0]["message"].startswith("duplicate:")


def test_publish_unsigned_file_is_signed_with_key(relay: str, tmp_path: Path,
                                                  key: tuple[Path, LocalSigner]) -> None:
    key_file, signer = key
    path = tmp_path / "template.json"
    path.write_text(json.dumps({"kind": 1, "content": "template", "tags": [["t", "x"]]}))
    res = invoke("publish", str(path), "-r", relay, "--key-file", str(key_file), "--json")
    assert res.exit_code == 0, res.output
    res = invoke("query", "-r", relay, "--id", json.loads(res.stdout)["id"], "--json")
    assert Event.from_json(res.stdout.strip()).pubkey == signer.public_key


def test_user_errors_exit_1_without_traceback(relay: str, tmp_path: Path,
                                              signer: LocalSigner) -> None:
    ev = make_event(signer)
    bad = ev.to_dict() | {"content": "tampered"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    cases = [
        (["publish", str(path), "-r", relay], "id or signature is invalid"),
        (["publish", str(tmp_path / "missing.json"), "-r", relay], "cannot read"),
        (["publish", "-", "-r", relay], "not JSON"),
        (["publish", "-k", "1", "-r", relay, "--key-file", str(tmp_path / "nokey")],
         "key file not found"),
        (["query", "-r", "ws://127.0.0.1:9", "-k", "1", "--timeout", "2"], "no relay reachable"),
        (["info", "ws://127.0.0.1:9", "--timeout", "2"], "cannot fetch relay information"),
    ]
    for args, message in cases:
        res = invoke(*args, input="{not json")
        assert res.exit_code == 1, (args, res.output)
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.output


def test_refused_by_every_relay_exits_1(relay: str, key: tuple[Path, LocalSigner]) -> None:
    key_file, _ = key
    res = invoke("publish", "-r", relay, "-k", "1", "--key-file", str(key_file),
                 "--content", "x" * 200_000, "--json")
    assert res.exit_code == 1
    result = json.loads(res.stdout)["results"][0]
    assert result["accepted"] is False and result["message"]


@pytest.mark.parametrize("args", [
    ["query", "-r", "http://nope", "-k", "1"],
    ["query", "-r", "ws://x", "-k", "1", "--filter", "{}"],
    ["query", "-r", "ws://x", "--filter", "not json"],
    ["query", "-r", "ws://x", "--filter", '{"kinds": "1"}'],
    ["query", "-r", "ws://x", "-t", "novalue"],
    ["query", "-r", "ws://x", "-t", "long=x"],
    ["query", "-r", "ws://x", "-a", "npub1invalid"],
    ["query", "-r", "ws://x", "-a", nip19.note_encode("a" * 64)],
    ["query", "-k", "1"],  # --relay is required
    ["publish", "-r", "ws://x"],  # neither a file nor --kind
    ["publish", "f.json", "-r", "ws://x", "-k", "1"],
    ["publish", "-r", "ws://x", "-k", "1"],  # building an event needs --key-file
    ["info", "https://relay"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


def test_info(relay: str) -> None:
    res = invoke("info", relay, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert 42 in doc["supported_nips"]
    res = invoke("info", relay)
    assert res.exit_code == 0 and doc["name"] in res.stdout


def test_app_runs_as_a_typer_sub_app_in_a_subprocess(relay: str) -> None:
    code = ("import typer; from oa_node.client.cli import app; root = typer.Typer();"
            "root.add_typer(app, name='relay'); root()")
    proc = subprocess.run([sys.executable, "-c", code, "relay", "info", relay, "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supported_nips"]


def test_one_relay_down_still_serves_the_others(relay: str, key: tuple[Path, LocalSigner]) -> None:
    key_file, signer = key
    down = "ws://127.0.0.1:9"
    res = invoke("publish", "-r", relay, "-r", down, "-k", "1", "--content", "half",
                 "--key-file", str(key_file), "--json")
    assert res.exit_code == 0, res.output
    results = {r["relay"]: r for r in json.loads(res.stdout)["results"]}
    assert results[relay]["accepted"] and not results[down]["accepted"]
    assert "cannot connect" in results[down]["message"]

    res = invoke("query", "-r", down, "-r", relay, "-a", signer.public_key, "--json")
    assert res.exit_code == 0, res.output
    assert [Event.from_json(line).content for line in res.stdout.splitlines()] == ["half"]
    assert "warning:" in res.stderr and "127.0.0.1:9" in res.stderr


def test_hostile_event_files_are_user_errors(relay: str, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"kind": 1, "content": "caf\xe9"}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    for path, message in ((latin1, "not UTF-8"), (deep, "nested too deeply")):
        res = invoke("publish", str(path), "-r", relay)
        assert res.exit_code == 1, res.output
        assert message in res.stderr
    res = invoke("query", "-r", relay, "--filter", "[" * 100_000)
    assert res.exit_code == 2 and "nested too deeply" in res.output


@contextmanager
def http_server(body: bytes, trickle: float = 0.0) -> Iterator[str]:
    """A one-purpose HTTP server on 127.0.0.1: answers every GET with ``body``, one byte
    every ``trickle`` seconds when set (a relay that never finishes its answer)."""
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/nostr+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)) if trickle else ():
                if done.wait(trickle):
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
            if not trickle:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}"
    finally:
        done.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_info_hostile_documents_are_user_errors() -> None:
    with http_server(b"[" * 100_000) as url:
        res = invoke("info", url, "--timeout", "5")
        assert res.exit_code == 1, res.output
        assert "not JSON" in res.stderr
    with http_server(b'{"name": "slow"}' * 100, trickle=0.2) as url:
        started = time.monotonic()
        res = invoke("info", url, "--timeout", "1")
        assert res.exit_code == 1, res.output
        assert "no relay information within 1s" in res.stderr
        assert time.monotonic() - started < 10
