"""``job submit --wait`` exit codes and ``job list`` outcomes by what a job came to (#18),
read from a real buyer ledger moved through its states."""

from __future__ import annotations

from pathlib import Path

import pytest

from oa_node.plugins.buyer.ledger import open_buyer_ledger
from oa_node.plugins.buyer.results import outcome


def job(tmp_path: Path, path: list[str], statuses: dict[str, str],
        verdicts: dict[str, str]) -> object:
    ledger = open_buyer_ledger(tmp_path)
    try:
        results = {rid: {"check": {"status": st, "ok": True}} for rid, st in statuses.items()}
        ledger.create("j", {"schema": "oa.sandbox_run.v1", "results": results,
                            "verdicts": verdicts})
        for state in path:
            ledger.transition("j", state)
        return ledger.get("j")
    finally:
        ledger.close()


@pytest.mark.parametrize("path, statuses, verdicts, expected", [
    (["result_received", "verified", "paid"], {"r": "success"}, {"r": "pass"}, ("success", 0)),
    (["result_received", "verified", "paid"], {"r": "failed"}, {"r": "pass"}, ("failed", 3)),
    (["result_received", "verified", "paid"], {"r": "timeout", "x": "success"},
     {"r": "pass", "x": "fail"}, ("timeout", 3)),
    (["result_received", "rejected"], {"r": "success"}, {"r": "fail"}, ("rejected", 4)),
    (["result_received", "verified", "refused"], {"r": "success"}, {"r": "pass"},
     ("refused", 4)),
    (["result_received", "verified"], {"r": "success"}, {"r": "pass"}, ("unpaid", 4)),
    (["result_received", "undecided"], {}, {}, ("undecided", 1)),
    (["expired"], {}, {}, ("expired", 1)),
    ([], {}, {}, ("pending", 1)),
])
def test_outcome_and_exit_code(tmp_path: Path, path: list[str], statuses: dict[str, str],
                               verdicts: dict[str, str], expected: tuple[str, int]) -> None:
    assert outcome(job(tmp_path, path, statuses, verdicts)) == expected  # type: ignore[arg-type]
