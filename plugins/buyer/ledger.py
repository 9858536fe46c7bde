"""The buyer's durable job ledger (SQLite in the node's data dir).

``published -> feedback -> result_received -> verified | rejected | undecided`` (valid
results disagree and no audit could tell who is right: nobody paid, nobody labelled),
then ``verified -> paid | refused``; ``expired`` (no usable result in time) and
``cancelled`` (NIP-09) end a job early. A job is paid only from ``verified``, and the
ledger keeps the receipts (request ids, result ids, verdicts, invoices, payment hashes and
preimages) in its history.
"""

from __future__ import annotations

from pathlib import Path

from oa_node.ledger import BUYER_JOBS, StateLedger

TRANSITIONS: dict[str, set[str]] = {
    "feedback": {"published"},
    "result_received": {"published", "feedback"},
    "verified": {"result_received"},
    "rejected": {"result_received"},
    "undecided": {"result_received"},
    "paid": {"verified"},
    "refused": {"verified"},
    "expired": {"published", "feedback"},
    "cancelled": {"published", "feedback", "result_received"},
}

PENDING = ("published", "feedback", "result_received", "verified")
FINAL = frozenset({"paid", "refused", "rejected", "undecided", "expired", "cancelled"})


def open_buyer_ledger(data_dir: Path) -> StateLedger:
    return StateLedger(Path(data_dir) / BUYER_JOBS[0], BUYER_JOBS[1], "published",
                       TRANSITIONS)
