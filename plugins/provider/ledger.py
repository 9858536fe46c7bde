"""The provider's durable job ledger (SQLite in the node's data dir).

``received -> accepted | declined -> running -> result_published -> paid | unpaid``, plus
``failed`` (a job that cannot finish, e.g. it was running when the provider stopped: it is
never run a second time) and ``cancelled`` (the buyer deleted the request). The ledger is
what makes a restart safe: a request already recorded is never taken again.
"""

from __future__ import annotations

from pathlib import Path

from oa_node.ledger import PROVIDER_JOBS, StateLedger

TRANSITIONS: dict[str, set[str]] = {
    "accepted": {"received"},
    "declined": {"received"},
    "running": {"accepted"},
    "result_published": {"running"},
    "paid": {"result_published"},
    "unpaid": {"result_published"},
    "failed": {"accepted", "running"},
    "cancelled": {"accepted", "running"},
}

#: states a job never leaves
FINAL = frozenset({"declined", "paid", "unpaid", "failed", "cancelled"})


def open_provider_ledger(data_dir: Path) -> StateLedger:
    return StateLedger(Path(data_dir) / PROVIDER_JOBS[0], PROVIDER_JOBS[1], "received",
                       TRANSITIONS)
