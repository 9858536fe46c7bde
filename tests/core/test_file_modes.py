"""Private data stays private on disk: the data dir is 0700 and every database (with its
WAL and SHM), ledger and secret in it is 0600 from the moment it exists, whatever the umask
(022 here, the usual default); secret files others could read are refused, as ssh does; a
data dir or database found more open is reported when the node starts."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness import wait as waits
from harness.marketplace import toml_text, wallet_and_frost_sections
from harness.wait import stop_process, wait_until
from oa_node import files
from oa_node.node import build_node
from oa_node.plugins.frostr import encoding, frost, sharefile
from oa_node.signer import LocalSigner, write_key_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def open_entries(data: Path) -> list[str]:
    """Everything under ``data`` that group or others may use: the dir beyond 0700, any
    file beyond 0600 (subfolders are covered by the data dir's own 0700)."""
    bad = [f"{data} {mode(data):04o}"] if mode(data) != 0o700 else []
    for root, _dirs, names in os.walk(data):
        for name in names:
            p = Path(root) / name
            if p.is_file() and not p.is_symlink() and mode(p) & 0o077:
                bad.append(f"{p.relative_to(data)} {mode(p):04o}")
    return bad


def umask_022() -> None:
    os.umask(0o022)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=umask_022)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Any, timeout: float, what: str, proc: subprocess.Popen[bytes],
             log: Path) -> None:
    def done() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"node exited while waiting for {what}:\n{log.read_text()}")
        return bool(cond())

    try:
        wait_until(done, timeout, what, interval=0.1)
    except AssertionError as exc:
        if not str(exc).startswith("timed out"):
            raise
        raise AssertionError(f"{exc}:\n{log.read_text()}") from None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run_node_with_every_store(tmp_path: Path, extra: dict[str, dict[str, Any]],
                              expect: set[str]) -> None:
    """Create the data dir through the CLI, run ``oa-node start`` with the plugins that keep
    files, and check every file's mode while it runs (WAL and SHM exist then) and after."""
    folder = tmp_path / "conf"
    folder.mkdir()
    data = folder / "data"  # made by oa-node itself, not by the test
    write_key_file(folder / "node.key", LocalSigner.generate().secret_key)
    port = free_port()
    relay = f"ws://127.0.0.1:{port}"
    sections: dict[str, dict[str, Any]] = {
        "node": {"data_dir": "data", "key_file": str(folder / "node.key"), "relays": [relay],
                 "name": "modes", "log_level": "debug"},
        "relay": {"enabled": True, "port": port},
        "ledger_wallet": {"enabled": True},
    }
    cfg = folder / "node.toml"
    cfg.write_text(toml_text(sections))
    out = cli("wallet", "create", "earn", "--json", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert open_entries(data) == [], "the CLI made the data dir or the ledger too open"
    uri = __import__("json").loads(out.stdout)["uri"]
    wallet_and_frost, _ = wallet_and_frost_sections(data, uri)
    sections |= {
        **wallet_and_frost,
        "zaps": {"enabled": True, "port": 0},
        "buyer": {"enabled": True},
        "nipsa": {"enabled": True, "heartbeat": 0},
        **extra,
    }
    cfg.write_text(toml_text(sections))
    log = tmp_path / "node.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "start", "-c", str(cfg)],
                                cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=umask_022)
    try:
        wait_for(lambda: port_open(port), 30, "the relay", proc, log)
        stores = {"relay.sqlite3", "ledger_wallet.db", "zaps.db", "buyer_jobs.sqlite3"} | expect
        wait_for(lambda: all((data / n).exists() and (data / f"{n}-wal").exists()
                             for n in stores), 60, f"the stores {sorted(stores)}", proc, log)
        started = {ln.split("starting service ")[1].strip()
                   for ln in log.read_text().splitlines() if "starting service " in ln}
        assert {"relay", "ledger_wallet", "wallet", "zaps", "buyer", "nipsa",
                "frostr"} <= started, started
        assert {n for n in os.listdir(data) if n.endswith("-shm")}, os.listdir(data)
        assert open_entries(data) == []
    finally:
        code = stop_process(proc, 30)
    assert code == 0, log.read_text()
    assert open_entries(data) == []
    assert "open to other users" not in log.read_text()


def test_a_node_run_keeps_every_file_in_its_data_dir_private(tmp_path: Path) -> None:
    run_node_with_every_store(tmp_path, {}, set())


@pytest.mark.docker
def test_a_provider_node_keeps_its_ledger_private(tmp_path: Path, sandbox_image: str) -> None:
    run_node_with_every_store(tmp_path, {
        "sandbox": {"image": sandbox_image},
        "provider": {"enabled": True, "lookback_secs": 0}}, {"provider_jobs.sqlite3"})


def test_sqlite_side_files_take_the_database_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "a" / "b" / "x.sqlite3"
        con = files.connect_sqlite(db, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (x)")
        con.execute("INSERT INTO t VALUES (1)")
        other = files.connect_sqlite(db)
        assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
        made = {p.name: mode(p) for p in db.parent.iterdir()}
        other.close()
        con.close()
        memory = files.connect_sqlite(":memory:")
        memory.close()
    finally:
        os.umask(old)
    assert made == {"x.sqlite3": 0o600, "x.sqlite3-wal": 0o600, "x.sqlite3-shm": 0o600}
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


def test_init_writes_a_private_data_dir(tmp_path: Path) -> None:
    out = cli("init", str(tmp_path / "fresh"), "--json")
    assert out.returncode == 0, out.stderr
    assert open_entries(tmp_path / "fresh") == []
    assert sorted(os.listdir(tmp_path / "fresh")) == ["node.key", "node.toml"]


@pytest.mark.parametrize("which", ["key", "wallet_uri", "share"])
def test_a_secret_file_open_to_others_stops_the_start(tmp_path: Path, which: str) -> None:
    write_key_file(tmp_path / "node.key", LocalSigner.generate().secret_key)
    body = '[node]\ndata_dir = "."\nrelays = ["ws://127.0.0.1:9"]\n'
    secret = tmp_path / "node.key"
    if which == "wallet_uri":
        secret = files.write_private(tmp_path / "wallet.uri", "nostr+walletconnect://"
                                     + "b8" * 32 + "?relay=ws%3A%2F%2F127.0.0.1%3A9&secret="
                                     + "71" * 32 + "\n")
        body += '[wallet]\nbackend = "nwc"\nuri_file = "wallet.uri"\n'
    elif which == "share":
        group, shares = encoding.from_dealer(frost.dealer_keygen(2, 3))
        sharefile.write_group(tmp_path / "group.txt", group)
        secret = sharefile.write_share(tmp_path / "share", shares[0])
        body += ('[frostr]\nenabled = true\ngroup = "group.txt"\nshare_file = "share"\n'
                 f'peers = ["{shares[1].public_key}"]\n')
    (tmp_path / "node.toml").write_text(body)
    secret.chmod(0o640)
    out = cli("start", "-c", str(tmp_path / "node.toml"), timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert str(secret) in line and "0640" in line and f"chmod 600 {secret}" in line, line
    secret.chmod(0o600)  # the same file, private again, is taken
    if which == "key":
        assert LocalSigner.from_file(secret).public_key
    elif which == "share":
        assert sharefile.read_share(secret).idx == 1


def test_start_warns_about_a_data_dir_and_databases_open_to_others(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_key_file(tmp_path / "node.key", LocalSigner.generate().secret_key)
    (tmp_path / "node.toml").write_text('[node]\ndata_dir = "."\n')
    con = files.connect_sqlite(tmp_path / "buyer_jobs.sqlite3")
    con.close()
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "buyer_jobs.sqlite3", 0o644)
    os.chmod(tmp_path / "node.toml", 0o644)
    node = build_node(tmp_path / "node.toml")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: node.run(handle_signals=False))
            await waits.wait_for(lambda: node._stop_event is not None, 10, "the node to run")
            node.stop()

    with caplog.at_level(logging.WARNING, logger="oa_node"):
        anyio.run(main)
    warned = [r.getMessage() for r in caplog.records if "open to other users" in r.getMessage()]
    assert warned == [
        f"data dir {tmp_path} has mode 0755, open to other users (run: chmod 700 {tmp_path})",
        f"{tmp_path / 'buyer_jobs.sqlite3'} has mode 0644, open to other users"
        f" (run: chmod 600 {tmp_path / 'buyer_jobs.sqlite3'})",
        f"{tmp_path / 'node.toml'} has mode 0644, open to other users"
        f" (run: chmod 600 {tmp_path / 'node.toml'})",
    ], warned
    assert os.listdir(tmp_path) and mode(tmp_path) == 0o755  # reported, not changed


def test_every_database_is_created_through_the_private_helper() -> None:
    """A database opened with plain ``sqlite3.connect`` is created with the umask's mode
    (0644 here): every store in the package goes through ``files.connect_sqlite``."""
    offenders = []
    for top in ("oa_node", "plugins", "executors", "sandbox"):
        for path in (REPO_ROOT / top).rglob("*.py"):
            if path == REPO_ROOT / "oa_node" / "files.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if "sqlite3.connect(" in line:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{n}")
    assert offenders == []
