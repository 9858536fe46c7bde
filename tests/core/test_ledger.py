"""The durable state machine behind the job ledgers: idempotent, refusing, surviving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oa_node.ledger import StateLedger, TransitionError

FLOW = {"running": ["received"], "done": ["running"], "failed": ["received", "running"]}


def ledger(path: Path) -> StateLedger:
    return StateLedger(path / "l.sqlite", "jobs", "received", FLOW)


def test_transitions_are_idempotent_and_recorded(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    assert lg.create("a", {"bid": 5}) is True
    assert lg.create("a", {"bid": 9}) is False
    assert lg.transition("a", "running", {"why": "go"}, worker=1) is True
    assert lg.transition("a", "running") is False
    rec = lg.get("a")
    assert rec is not None and rec.state == "running" and rec.data == {"bid": 5, "worker": 1}
    assert [(h.from_state, h.to_state) for h in lg.history("a")] == [
        (None, "received"), ("received", "running")]
    assert lg.history("a")[1].receipt == {"why": "go"}


def test_impossible_transitions_are_refused(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    lg.create("a")
    with pytest.raises(TransitionError, match="cannot go from received to done"):
        lg.transition("a", "done")
    with pytest.raises(TransitionError, match="unknown state"):
        lg.transition("a", "paid")
    with pytest.raises(KeyError):
        lg.transition("zzz", "running")
    assert lg.get("a").state == "received"  # type: ignore[union-attr]


def test_state_survives_a_killed_process(tmp_path: Path) -> None:
    code = (
        "import os, sys; sys.path.insert(0, {!r})\n"
        "from oa_node.ledger import StateLedger\n"
        "lg = StateLedger({!r}, 'jobs', 'received', {!r})\n"
        "lg.create('a'); lg.transition('a', 'running')\n"
        "os.kill(os.getpid(), 9)\n"
    ).format(str(Path(__file__).resolve().parents[2]), str(tmp_path / "l.sqlite"), FLOW)
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, check=False)
    assert proc.returncode == -9
    lg = ledger(tmp_path)
    assert lg.get("a").state == "running"  # type: ignore[union-attr]
    assert [r.id for r in lg.in_states("running")] == ["a"]
    assert lg.find("a") is not None


def test_find_takes_prefixes_literally(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    for rid in ("abc1", "abd2", "x_y", "Q1"):
        lg.create(rid)
    assert lg.find("abc").id == "abc1"  # type: ignore[union-attr]
    assert lg.find("ab") is None  # ambiguous
    assert lg.find("a_") is None  # "_" is not a wildcard
    assert lg.find("x_").id == "x_y"  # type: ignore[union-attr]
    assert lg.find("%") is None and lg.find("") is None
    assert lg.find("q") is None  # ids are case-sensitive
    lg.create("abc")
    assert lg.find("abc").id == "abc"  # type: ignore[union-attr]  # an exact id wins


def test_a_failed_write_leaves_record_and_history_unchanged(tmp_path: Path) -> None:
    lg = ledger(tmp_path)
    lg.create("a", {"n": 1})
    with pytest.raises(TypeError):
        lg.transition("a", "running", {"receipt": object()})
    with pytest.raises(TypeError):
        lg.update("a", bad=object())
    rec = lg.get("a")
    assert rec is not None and rec.state == "received" and rec.data == {"n": 1}
    assert [h.to_state for h in lg.history("a")] == ["received"]
    assert lg.transition("a", "running") is True  # the ledger still works afterwards
