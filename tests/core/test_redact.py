"""Secrets in URIs (a DSN's password, an NWC URI's ``secret=``) never reach any output:
``config check --json``, config errors, the CLI's error line, log records."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from oa_node.redact import hide_userinfo, install_log_redaction, redact

PASSWORD = "hunter2-Pa55"
NWC_SECRET = "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c"
DSN = f"postgresql://oa:{PASSWORD}@127.0.0.1:5432/relay"
NWC = ("nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"
       f"?relay=wss%3A%2F%2Frelay.example&secret={NWC_SECRET}&lud16=a@b.c")


def oa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("text", "expected"), [
    (DSN, "postgresql://oa:***@127.0.0.1:5432/relay"),
    (f"cannot open {DSN}: refused", "cannot open postgresql://oa:***@127.0.0.1:5432/relay: "
     "refused"),
    (NWC, NWC.replace(NWC_SECRET, "***")),
    (f"host=db user=oa password={PASSWORD} port=5", "host=db user=oa password=*** port=5"),
    (f"host=db password='{PASSWORD} x' port=5", "host=db password=*** port=5"),
    ("https://tok:x-oauth@github.com/a/b.git", "https://tok:***@github.com/a/b.git"),
])
def test_redact_masks_every_form_of_secret(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "ws://127.0.0.1:7447", "wss://relay.example:443/path?x=1&y=2", "a@b.c", "x = 1",
    "https://github.com/a/b.git?ref=main", "ssh://git@github.com:22/a/b",
    "postgresql://oa@127.0.0.1/relay",
])
def test_redact_leaves_text_without_a_secret_alone(text: str) -> None:
    assert redact(text) == text


def test_config_check_json_hides_the_dsn_password(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[relay]\nstorage = "postgres"\npostgres_dsn = "{DSN}"\n'
                   f'[relay.info]\ncontact = "{DSN}"\n')
    res = oa("config", "check", "--config", str(cfg), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert PASSWORD not in res.stdout
    relay = json.loads(res.stdout)["config"]["relay"]
    assert relay["postgres_dsn"] == "***"  # declared secret
    assert relay["info"]["contact"] == "postgresql://oa:***@127.0.0.1:5432/relay"


def test_config_errors_never_echo_a_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[relay]\npostgres_dsn = ["{DSN}"]\n')
    res = oa("config", "check", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 1 and "relay.postgres_dsn: expected a string" in res.stderr
    assert PASSWORD not in res.stderr
    # a key not declared secret still has its URI's password masked in the error line
    cfg.write_text(f'[node]\nrelays = ["{DSN}"]\n')
    res = oa("config", "check", "--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 1 and "node.relays: expected a relay URL" in res.stderr
    assert PASSWORD not in res.stderr and "oa:***@" in res.stderr


def test_log_records_are_redacted_messages_args_and_exceptions() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.redact")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install_log_redaction(logger)
        logger.warning("connecting to %s", DSN)
        logger.warning("wallet %s", NWC)
        try:
            raise ValueError(f"bad dsn {DSN}")
        except ValueError:
            logger.exception("store failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert PASSWORD not in out and NWC_SECRET not in out, out
    assert "postgresql://oa:***@" in out and "secret=***" in out and "bad dsn" in out


def test_hide_userinfo_masks_a_token_user_name_too() -> None:
    assert hide_userinfo("https://ghp_tok@github.com/a/b") == "https://***@github.com/a/b"
    assert hide_userinfo("https://u:pw@h/x?secret=s") == "https://***@h/x?secret=***"
    assert hide_userinfo("https://github.com/a/b") == "https://github.com/a/b"
