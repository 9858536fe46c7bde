"""What the buyer says in public about each result (pure): NIP-32 verdict labels.

Labels are computed from the job's whole ledger record, after the whole decision, payment
included, so a label never says more than the buyer knows: ``pass`` for a verified result
that was paid (or that the buyer itself could not pay: no wallet, a failed route),
``refused`` for a verified result whose invoice the buyer refused (an overcharge, an
invoice that does not match its amount tag, no invoice), ``fail`` for a result that failed
verification. Surplus results (agreeing beyond K) and undecided ones get no label. Every
label names the verification level the verdict rests on (``structural``, ``redundant:K``,
``audited``) under the ``oa.verification.level`` namespace.
"""

from __future__ import annotations

from typing import Any

from oa_node.nostr import nip90
from oa_node.nostr.event import Event, EventTemplate

LEVEL_NAMESPACE = "oa.verification.level"
#: refusals that are the buyer's own doing: the verified work still gets its ``pass``
BUYER_SIDE = ("no wallet configured", "payment failed")


def verification_level(outcome: str, digest: str, agreeing: int,
                       audit_digest: str | None) -> str:
    """What a verdict proves: ``audited`` (the buyer's own re-run matched),
    ``redundant:K`` (K >= 2 distinct providers agree), else ``structural`` (signatures,
    request binding, hashes, image digest, internal consistency of one result)."""
    if audit_digest is not None and (outcome != "pass" or audit_digest == digest):
        return "audited"
    if outcome == "pass" and agreeing >= 2:
        return f"redundant:{agreeing}"
    return "structural"


def planned_labels(data: dict[str, Any]) -> list[tuple[Event, str, str, str]]:
    """``(result event, label, reason, level)`` for every result of a decided (and, when
    verified, paid or refused) job. A result that failed its own checks is a ``fail`` at
    level ``structural`` whatever the job's level; other verdicts carry the job's level."""
    verdicts: dict[str, str] = data.get("verdicts") or {}
    failures: dict[str, str] = data.get("failures") or {}
    payments: dict[str, Any] = data.get("payments") or {}
    refusals: dict[str, str] = data.get("refusals") or {}
    level = str(data.get("level") or "structural")
    out: list[tuple[Event, str, str, str]] = []
    for rid, verdict in verdicts.items():
        result = (data.get("results") or {}).get(rid)
        if result is None:
            continue
        event = Event.from_dict(result["event"])
        if verdict == "fail":
            own = (result.get("check") or {}).get("ok", True)
            out.append((event, "fail", failures.get(rid, ""), level if own else "structural"))
        elif verdict == "pass":
            refusal = refusals.get(rid)
            if rid in payments or (refusal or "").startswith(BUYER_SIDE):
                out.append((event, "pass", "verified", level))
            elif refusal is not None:
                out.append((event, "refused", refusal, level))
    return out


def label_template(event: Event, label: str, reason: str, level: str, schema: str,
                   job_id: str) -> EventTemplate:
    template = nip90.verdict_template(event, event.first_tag_value("e") or job_id, label,
                                      reason[:2000], schema)
    template.tags += [["L", LEVEL_NAMESPACE], ["l", level, LEVEL_NAMESPACE]]
    return template
