"""The dashboard reads the job ledgers through ``LedgerReader``: what the writer wrote,
nothing created or changed, and a ledger not made yet reads as empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from oa_node.ledger import LedgerReader, StateLedger


def test_reads_what_the_ledger_wrote_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    missing = LedgerReader(path, "jobs")
    assert missing.all() == [] and missing.get("a") is None and missing.history("a") == []
    assert not path.exists()  # reading made no file

    ledger = StateLedger(path, "jobs", "new", {"done": {"new"}})
    ledger.create("a", {"title": "<script>"})
    ledger.transition("a", "done", {"why": "ok"}, extra=1)
    reader = LedgerReader(path, "jobs")
    (rec,) = reader.all()
    assert rec.id == "a" and rec.state == "done" and rec.data == {"title": "<script>", "extra": 1}
    assert [h.to_state for h in reader.history("a")] == ["new", "done"]
    assert reader.get("a") == rec
    assert LedgerReader(path, "other").all() == []  # no such table: empty, not an error
    before = path.stat().st_mtime_ns
    reader.all(), reader.history("a")
    assert path.stat().st_mtime_ns == before
    ledger.close()


def test_a_table_name_must_be_an_identifier(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LedgerReader(tmp_path / "x", "jobs; DROP TABLE jobs")
