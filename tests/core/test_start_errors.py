"""Setup mistakes at ``oa-node start`` are one line naming the key or resource, no traceback;
``config check`` finds them first, all at once (#18).

Every case runs the real ``oa-node`` process on a config written by ``oa-node init``.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.conftest import postgres_dsn


def oa(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    """A config from ``oa-node init`` with the relay on a free port."""
    res = oa("init", str(tmp_path / "n"), "--relay", "ws://127.0.0.1:9", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return tmp_path / "n"


def edit(node_dir: Path, section: str, **values: object) -> None:
    """Set keys of ``[section]`` in the config (replacing the lines init wrote)."""
    cfg = node_dir / "node.toml"
    text = cfg.read_text()
    head = re.search(rf"(?m)^\[{re.escape(section)}\]\n", text)
    assert head, section
    end = re.search(r"(?m)^\[", text[head.end():])
    body = text[head.end(): head.end() + end.start()] if end else text[head.end():]
    for key, value in values.items():
        line = f"{key} = {value}"
        body, n = re.subn(rf"(?m)^#? ?{key} = .*$", line, body, count=1)
        if n == 0:
            body = line + "\n" + body
    cfg.write_text(text[: head.end()] + body + (text[head.end() + end.start():] if end else ""))


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The failed start's single error line (no traceback anywhere in its output)."""
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    return errors[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def pg_dsn() -> str:
    return postgres_dsn()


def test_port_in_use_names_the_relay_port(node_dir: Path, busy_port: int) -> None:
    edit(node_dir, "relay", port=busy_port)
    line = one_line_error(oa("start", "-c", str(node_dir / "node.toml"), cwd=node_dir))
    assert f"[relay] host/port 127.0.0.1:{busy_port}" in line and "already in use" in line


def _dsn_with(dsn: str, *, password: str | None = None, port: int | None = None,
              database: str | None = None) -> str:
    m = re.fullmatch(r"postgresql://([^:@/]+)(?::([^@]*))?@([^:/]+):(\d+)/(.+)", dsn)
    assert m, "unexpected DSN shape"
    user, pw, host, p, db = m.groups()
    return (f"postgresql://{user}:{password if password is not None else pw}@{host}:"
            f"{port if port is not None else p}/{database or db}")


@pytest.mark.parametrize("case", ["down", "wrong password", "missing database"])
def test_postgres_setup_errors_name_the_dsn_key(node_dir: Path, pg_dsn: str, case: str) -> None:
    if case == "down":
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        dsn = _dsn_with(pg_dsn, port=free)
    elif case == "wrong password":
        dsn = _dsn_with(pg_dsn, password="not-the-password")
    else:
        dsn = _dsn_with(pg_dsn, database="oa_node_no_such_db")
    edit(node_dir, "relay", storage='"postgres"', postgres_dsn=f'"{dsn}"', port=0)
    line = one_line_error(oa("start", "-c", str(node_dir / "node.toml"), cwd=node_dir))
    assert line.startswith("error: [relay] postgres_dsn:"), line
    assert "not-the-password" not in line
    expected = {"down": "connect", "wrong password": "password authentication failed",
                "missing database": "does not exist"}[case]
    assert expected in line.lower(), line


@pytest.mark.parametrize(("section", "values", "key", "fragments"), [
    pytest.param("relay", {"storage": '"postgres"'}, "relay.storage",
                 ["relay.storage", "postgres_dsn"], id="postgres without dsn"),
    pytest.param("wallet", {"backend": '"nwc"', "uri_file": '"missing.uri"'}, "wallet.uri_file",
                 ["uri_file", "missing.uri"], id="missing uri file"),
])
def test_mistake_is_caught_by_check_and_start(node_dir: Path, section: str,
                                              values: dict[str, str], key: str,
                                              fragments: list[str]) -> None:
    edit(node_dir, section, **values)
    cfg = str(node_dir / "node.toml")
    check = oa("config", "check", "-c", cfg, cwd=node_dir)
    assert check.returncode == 1 and key in check.stderr and "Traceback" not in check.stderr
    line = one_line_error(oa("start", "-c", cfg, cwd=node_dir))
    for fragment in fragments:
        assert fragment in check.stderr and fragment in line


def test_check_reports_every_error_at_once(node_dir: Path) -> None:
    edit(node_dir, "relay", port='"80"', storage='"postgres"')  # storage: checked once valid
    edit(node_dir, "sandbox", max_pids="-1.5")
    edit(node_dir, "wallet", backend='"nwc"')
    with (node_dir / "node.toml").open("a") as fh:
        fh.write("\n[zapz]\nenabled = true\n")
    res = oa("config", "check", "-c", str(node_dir / "node.toml"), cwd=node_dir)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    joined = "\n".join(errors)
    for expected in ("relay.port: expected an integer", "sandbox.max_pids",
                     "unknown section [zapz]", 'wallet.backend: "nwc" needs uri or uri_file'):
        assert expected in joined, joined
    assert len(errors) == 4, joined
    assert all(re.match(r"error: \S+node\.toml:\d+: ", ln) for ln in errors), joined


def test_a_disabled_plugins_section_is_a_warning(node_dir: Path) -> None:
    edit(node_dir, "plugins", disable='["zaps"]')
    cfg = str(node_dir / "node.toml")
    res = oa("config", "check", "-c", cfg, cwd=node_dir)
    assert res.returncode == 0, res.stderr
    assert "warning:" in res.stderr and "[zaps] ignored" in res.stderr
    # an unknown section that is no disabled plugin's is still an error
    with (node_dir / "node.toml").open("a") as fh:
        fh.write("\n[zapz]\nenabled = true\n")
    res = oa("config", "check", "-c", cfg, cwd=node_dir)
    assert res.returncode == 1 and "unknown section [zapz]" in res.stderr
