"""The buyer's own record of each provider, from its own verdicts (SQLite, data dir).

One row per verdict on a result (``pass`` at a level, ``fail``, ``refused``,
``undecided``), written once per result whatever happens (a replay, a restart), so a
provider's record is exactly what this buyer has seen of it. From it:

- *caught cheating*: a ``fail`` that rests on more than one result's own checks (an audit
  re-run or other providers that disagree with it, level ``audited`` or ``redundant:K``):
  such a provider is not addressed again and its results to open jobs are ignored;
- *known good*: at least one ``pass`` that rests on more than its own checks (``audited``
  or ``redundant:K``) and never caught cheating: it counts as a distinct provider for
  redundancy (together with the providers a job names). Structural passes alone do not:
  any key can send self-consistent results.

A structural ``fail`` (no work shown, a malformed result) counts against a provider but is
not "cheating" on its own: an honest provider can fail to run a job. Verdict labels from
keys the buyer trusts (``[buyer] trust_labels_from``) are imported as if they were its own
(the buyer's own verdict on a result wins).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from oa_node import files
from oa_node.nostr import nip90
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.labels import LEVEL_NAMESPACE

FILE = "buyer_reputation.sqlite3"


class Reputation:
    def __init__(self, data_dir: Path) -> None:
        self._lock = threading.Lock()
        self._db = files.connect_sqlite(Path(data_dir) / FILE, check_same_thread=False,
                                       isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS verdicts (
            result_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, provider TEXT NOT NULL,
            verdict TEXT NOT NULL, level TEXT NOT NULL, at REAL NOT NULL)""")
        self._db.execute("CREATE INDEX IF NOT EXISTS verdicts_provider ON verdicts(provider)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, job_id: str, rows: list[tuple[str, str, str, str]]) -> None:
        """``(result_id, provider, verdict, level)`` rows of one decided job; a result
        already recorded keeps its first verdict."""
        now = time.time()
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?,?,?)",
                [(rid, job_id, pk, verdict, level, now) for rid, pk, verdict, level in rows])

    def import_labels(self, labels: list[Event], trusted: set[str]) -> int:
        """Verdict labels (NIP-32) signed by keys this buyer trusts (``[buyer]
        trust_labels_from``) join the record, once per result; the buyer's own verdict on
        a result always wins. Returns how many were new."""
        rows = []
        for ev in labels:
            if ev.pubkey not in trusted or not ev.verify():
                continue
            parsed = nip90.parse_verdict(ev)
            if parsed is None or parsed[0] not in ("pass", "fail", "refused"):
                continue
            level = next((t[1] for t in ev.tags if len(t) >= 3 and t[0] == "l"
                          and t[2] == LEVEL_NAMESPACE), "structural")
            rows.append((parsed[1], f"label:{ev.pubkey}", parsed[2], parsed[0], level,
                         float(ev.created_at)))
        with self._lock:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO verdicts VALUES (?,?,?,?,?,?)", rows)
            return self._db.total_changes - before

    def of(self, provider: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT verdict, level, count(*) FROM verdicts WHERE "
                                    "provider=? GROUP BY verdict, level", (provider,)).fetchall()
        return summarize(rows)

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT provider, verdict, level, count(*) FROM verdicts "
                                    "GROUP BY provider, verdict, level").fetchall()
        by: dict[str, list[tuple[str, str, int]]] = {}
        for pk, verdict, level, n in rows:
            by.setdefault(pk, []).append((verdict, level, n))
        return {pk: summarize(r) for pk, r in by.items()}

    def cheated(self, provider: str) -> bool:
        return bool(self.of(provider)["cheated"])

    def known_good(self, provider: str) -> bool:
        rep = self.of(provider)
        beyond = sum(n for lvl, n in rep["passes_by_level"].items() if lvl != "structural")
        return beyond > 0 and not rep["cheated"]


def summarize(rows: list[tuple[str, str, int]]) -> dict[str, Any]:
    """Counts by verdict (passes also by level) and whether it was caught cheating."""
    out: dict[str, Any] = {"passes": 0, "passes_by_level": {}, "fails": 0, "cheated": 0,
                           "refused": 0, "undecided": 0}
    for verdict, level, n in rows:
        if verdict == "pass":
            out["passes"] += n
            out["passes_by_level"][level] = out["passes_by_level"].get(level, 0) + n
        elif verdict == "fail":
            out["fails"] += n
            if level != "structural":
                out["cheated"] += n
        elif verdict in ("refused", "undecided"):
            out[verdict] += n
    out["score"] = out["passes"] - 3 * out["fails"] - 10 * out["cheated"]
    return out
