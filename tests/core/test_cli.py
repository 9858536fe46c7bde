"""The core CLI: keys, init, config, plugins; user errors print one line, no traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oa_node.cli import make_app
from oa_node.nostr import nip19
from oa_node.nostr.keys import public_key_hex

runner = CliRunner()
SECRET = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"


def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(make_app(), list(args), input=input, catch_exceptions=False)


def oa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_keys_generate_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k" / "node.key"
    res = invoke("keys", "generate", "--key-file", str(key), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert info["public_key"] == public_key_hex(bytes.fromhex(key.read_text().strip()))
    assert nip19.decode(info["npub"]).data == info["public_key"]

    again = oa("keys", "generate", "--key-file", str(key), cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    forced = invoke("keys", "generate", "--key-file", str(key), "--force", "--json")
    assert json.loads(forced.stdout)["public_key"] != info["public_key"]


@pytest.mark.parametrize("form", ["hex", "nsec"])
def test_keys_import_hex_or_nsec(tmp_path: Path, form: str) -> None:
    secret = SECRET if form == "hex" else nip19.nsec_encode(bytes.fromhex(SECRET))
    key = tmp_path / "node.key"
    res = invoke("keys", "import", secret, "--key-file", str(key), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["public_key"] == public_key_hex(bytes.fromhex(SECRET))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    shown = json.loads(invoke("keys", "show", "--key-file", str(key), "--json", "--nsec").stdout)
    assert nip19.decode(shown["nsec"]).data == SECRET


def test_keys_import_rejects_garbage_clearly(tmp_path: Path) -> None:
    res = oa("keys", "import", "nsec1notakey", "--key-file", str(tmp_path / "k"), cwd=tmp_path)
    assert res.returncode == 1 and "cannot import key" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "k").exists()


def test_keys_show_missing_file(tmp_path: Path) -> None:
    res = oa("keys", "show", "--key-file", str(tmp_path / "missing"), cwd=tmp_path)
    assert res.returncode == 1 and "key file not found" in res.stderr


def test_keys_follow_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('[node]\ndata_dir = "data"\nkey_file = "id.key"\n')
    res = invoke("keys", "generate", "--config", str(cfg), "--json")
    assert json.loads(res.stdout)["key_file"] == str((tmp_path / "data" / "id.key").resolve())


def test_init_writes_a_config_that_validates(tmp_path: Path) -> None:
    res = invoke("init", str(tmp_path / "n"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert stat.S_IMODE(Path(out["key_file"]).stat().st_mode) == 0o600
    check = invoke("config", "check", "--config", out["config"], "--json")
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["config"]["node"]["data_dir"] == "."
    shown = json.loads(invoke("keys", "show", "--config", out["config"], "--json").stdout)
    assert shown["public_key"] == out["public_key"]
    again = oa("init", str(tmp_path / "n"), cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_broken_config_is_one_line_naming_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('[node]\nlog_level = "loud"\n')
    res = oa("config", "check", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 1
    assert f"{cfg}:2: node.log_level: expected one of" in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr


def test_example_matches_the_committed_node_toml_example() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "OA_NODE_DISABLE_PLUGINS"}
    res = subprocess.run([sys.executable, "-m", "oa_node.cli", "config", "example"],
                         capture_output=True, text=True, timeout=60, check=True, env=env)
    committed = (root / "node.toml.example").read_text()
    assert committed.split("\n", 3)[3] == res.stdout, (
        "node.toml.example is stale: regenerate it with `make node.toml.example`")


def test_help_everywhere() -> None:
    app = make_app()
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "keys" in res.stdout
    for cmd in (["keys", "--help"], ["config", "--help"], ["start", "--help"],
                ["init", "--help"], ["plugins", "--help"]):
        assert runner.invoke(app, cmd).exit_code == 0, cmd


def test_plugins_json_lists_builtins() -> None:
    res = invoke("plugins", "--json")
    data = json.loads(res.stdout)
    assert {"name", "module", "distribution", "hooks"} <= set(data["loaded"][0])
    assert all(p["distribution"] == "oa-node" for p in data["loaded"])


def test_keys_import_refuses_an_out_of_range_key_without_writing(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    key.write_text(SECRET + "\n")
    key.chmod(0o600)  # a key is refused when not 0600
    res = oa("keys", "import", "00" * 32, "--key-file", str(key), "--force", cwd=tmp_path)
    assert res.returncode == 1 and "not a valid secret key" in res.stderr
    assert "Traceback" not in res.stderr
    assert key.read_text() == SECRET + "\n"  # the good key was not overwritten


def test_keys_show_of_a_zero_key_file_is_a_user_error(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    key.write_text("00" * 32)
    key.chmod(0o600)
    res = oa("keys", "show", "--key-file", str(key), cwd=tmp_path)
    assert res.returncode == 1 and "not a valid secret key" in res.stderr
    assert "Traceback" not in res.stderr
