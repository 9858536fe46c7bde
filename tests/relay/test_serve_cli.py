"""`oa-node relay serve`: a foreground relay that serves until SIGINT and keeps its data."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

from harness.wait import wait_port
from oa_node.nostr.event import EventTemplate, sign_event
from oa_node.nostr.keys import generate_secret_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_relay_serve_publish_query_and_stop(tmp_path: Path) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "relay", "serve", "--port",
                             str(port), "--db", str(tmp_path / "r.sqlite3")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, 30, proc)
        event = sign_event(EventTemplate(kind=1, content="served"), generate_secret_key())
        (tmp_path / "e.json").write_text(event.to_json())
        published = oa("relay", "publish", str(tmp_path / "e.json"), "--relay", url, "--json")
        assert published.returncode == 0, published.stderr
        queried = oa("relay", "query", "--relay", url, "--id", event.id, "--json")
        assert [json.loads(line)["id"] for line in queried.stdout.splitlines()] == [event.id]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode in (0, -signal.SIGINT, 130)
    assert (tmp_path / "r.sqlite3").exists()


def test_unreachable_database_or_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    dead_pg = "postgresql://oa:oa@127.0.0.1:1/none"
    for argv in (["-m", "oa_node.cli", "relay", "serve", "--port", "0", "--postgres", dead_pg],
                 ["-m", "oa_node.plugins.relay", "--port", "0", "--postgres", dead_pg]):
        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr and "PostgreSQL" in out.stderr, out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = subprocess.run([sys.executable, "-m", "oa_node.cli", "relay", "serve", "--port",
                              port, "--db", str(tmp_path / "r.sqlite3")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "address already in use" in out.stderr, out.stderr
