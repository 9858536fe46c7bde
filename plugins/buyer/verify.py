"""Verification of job results (pure): one result on its own, then all of a job's results.

:func:`check_result` makes every objective check one result allows (pay after
verify): signature, binding to one of this job's requests (``e``,
the embedded ``request`` event, kind + 1000, ``p`` = buyer, the named provider), encryption
kept, the schema's own verifier (structure, ``input_sha256``, requested image digest,
internal consistency), and provenance naming the signer with an attestation that binds the
signer's key to the result (a copy re-signed under another key fails here). It yields the
result's *verification digest*, which names no provider: honest providers agree on it.

:func:`decide` compares digests across providers: ``redundancy`` distinct providers with the
same digest pass (the first ``redundancy`` of them in arrival order are the ones paid:
exactly K payments at redundancy K, whatever arrives meanwhile); a disagreement needs a
tie-break (an audit re-run) or more results; at the deadline, too few agreeing results
reject the job. At redundancy K > 1 results sent in clear never count towards agreement:
anyone could read one, recompute its attestation under their own key and "agree".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from oa_node.canonical import CanonicalJSONError, loads
from oa_node.executors.jobtype import JobType
from oa_node.nostr import kinds, nip90
from oa_node.nostr.event import Event
from oa_node.nostr.nip90 import JobResult


@dataclass(frozen=True)
class ResultCheck:
    """The verdict on one result, on its own."""

    result_id: str
    provider: str
    ok: bool
    problems: tuple[str, ...] = ()
    digest: str = ""
    status: str = ""
    #: sent in clear (readable, hence copyable, by anyone): no vote at redundancy K > 1
    clear: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"result_id": self.result_id, "provider": self.provider, "ok": self.ok,
                "problems": list(self.problems), "digest": self.digest, "status": self.status,
                "clear": self.clear}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResultCheck:
        return cls(d["result_id"], d["provider"], bool(d["ok"]), tuple(d.get("problems", ())),
                   d.get("digest", ""), d.get("status", ""), bool(d.get("clear", False)))


def check_result(
    result: JobResult,
    plaintext: str | None,
    *,
    requests: Sequence[Event],
    request_doc: dict[str, Any],
    buyer: str,
    job_type: JobType,
    decrypt_error: str | None = None,
) -> ResultCheck:
    """Every check one result allows; ``plaintext`` is the content (decrypted if needed)."""
    ev = result.event
    problems: list[str] = []
    if not ev.verify():
        problems.append("bad event id or signature")
    by_id = {r.id: r for r in requests}
    request = by_id.get(result.request_id)
    if request is None:
        problems.append("answers a request that is not this job's")
    else:
        if result.request is None:
            problems.append("no request tag")
        elif result.request.id != request.id or result.request.sig != request.sig:
            problems.append("the request tag is not the request this job sent")
        if ev.kind != kinds.job_result_kind(request.kind):
            problems.append(f"kind {ev.kind} does not answer request kind {request.kind}")
        named = [p for p in request.tag_values("p")]
        if named and ev.pubkey not in named:
            problems.append("the request named other providers")
        if any(t and t[0] == "encrypted" for t in request.tags) and not result.encrypted:
            problems.append("the request was encrypted but the result was sent in clear")
        elif nip90.wants_encrypted_result(request) and not result.encrypted:
            problems.append("the buyer asked for an encrypted result; it was sent in clear "
                            "(anyone could copy it)")
    if buyer not in ev.tag_values("p"):
        problems.append("result is not addressed to this buyer (p tag)")
    if decrypt_error is not None:
        problems.append(f"cannot decrypt the result: {decrypt_error}")
        return ResultCheck(ev.id, ev.pubkey, False, tuple(problems))
    try:
        doc = loads(plaintext or "")
    except (CanonicalJSONError, ValueError, RecursionError) as exc:
        problems.append(f"content is not JSON: {exc}")
        return ResultCheck(ev.id, ev.pubkey, False, tuple(problems))
    if not isinstance(doc, dict):
        problems.append("content is not a JSON object")
        return ResultCheck(ev.id, ev.pubkey, False, tuple(problems))
    try:
        verdict = job_type.verifier(request_doc, doc)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:  # a hostile document
        problems.append(f"result cannot be checked: {type(exc).__name__}: {exc}")
        return ResultCheck(ev.id, ev.pubkey, False, tuple(problems))
    problems += list(verdict.problems)
    prov = doc.get("provenance")
    # the verifier checked the attestation against provenance.provider_pubkey; this ties
    # that key to the signer, so a copy re-signed under another key fails one or the other
    named = prov.get("provider_pubkey") if isinstance(prov, dict) else None
    if not named:
        problems.append("provenance names no provider")
    elif named != ev.pubkey:
        problems.append("provenance names another provider")
    status = str(doc.get("status", ""))
    return ResultCheck(ev.id, ev.pubkey, not problems, tuple(problems),
                       verdict.verification_digest, status, clear=not result.encrypted)


@dataclass(frozen=True)
class Decision:
    """``outcome``: ``pass`` (``passed`` results verified, ``failed`` not), ``reject``
    (none verified), ``wait`` (too few results yet) or ``tiebreak`` (redundant results
    disagree: an audit must decide)."""

    outcome: str
    passed: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    reason: str = ""
    #: results that agree with ``passed`` but came after the ``redundancy`` first ones:
    #: recorded, never paid (a burst or a replay must not multiply the payments)
    surplus: tuple[str, ...] = ()
    #: valid results of providers not counted as distinct, in no passing group: no verdict
    uncounted: tuple[str, ...] = ()


def decide(checks: Sequence[ResultCheck], redundancy: int, *, final: bool = False,
           audit_digest: str | None = None,
           distinct: Collection[str] | None = None) -> Decision:
    """Compare the results of one job (in arrival order; one per provider counts).

    With ``audit_digest`` (the buyer's own re-run) the audit is one more vote, and only the
    group that matches it can pass. With ``distinct``, only those providers count towards
    agreement (one actor can hold many keys): the valid results of others are ``surplus``
    when they agree with a passing group, ``failed`` when they disagree with it, else
    ``uncounted``. At ``redundancy`` > 1 a result sent in clear is one of those others too:
    anyone could have read it and attested it under their own key.
    """
    failed: dict[str, str] = {}
    seen: set[str] = set()
    clear = 0
    groups: dict[str, list[str]] = {}
    others: dict[str, list[str]] = {}
    for c in checks:
        if c.provider in seen:
            failed[c.result_id] = "a second result from the same provider"
            continue
        seen.add(c.provider)
        if not c.ok:
            failed[c.result_id] = "; ".join(c.problems) or "invalid"
            continue
        counted = (distinct is None or c.provider in distinct) and not (
            redundancy > 1 and c.clear)
        if not counted and c.clear and redundancy > 1:
            clear += 1
        (groups if counted else others).setdefault(c.digest, []).append(c.result_id)
    uncounted = tuple(rid for ids in others.values() for rid in ids)

    def passing(digest: str, winners: list[str], why: str) -> Decision:
        for group in (groups, others):
            for other, ids in group.items():
                if other != digest:
                    for rid in ids:
                        failed[rid] = why
        return Decision("pass", tuple(winners[:redundancy]), failed, digest,
                        surplus=tuple(winners[redundancy:]) + tuple(others.get(digest, [])))

    if audit_digest is not None:
        winners = groups.get(audit_digest, [])
        if winners and len(winners) + 1 >= redundancy:
            return passing(audit_digest, winners,
                           "disagrees with the buyer's own re-run (audit)")
        for digest, ids in groups.items():
            if digest != audit_digest:
                for rid in ids:
                    failed[rid] = "disagrees with the buyer's own re-run (audit)"
        if not winners and any(groups.values()):
            return Decision("reject", (), failed, "",
                            "no result agrees with the buyer's own re-run",
                            uncounted=uncounted)
        if not final:
            return Decision("wait", (), failed, "", "waiting for results that match the audit",
                            uncounted=uncounted)
        return Decision("reject", (), failed, "",
                        f"{len(winners)} result(s) match the audit, {redundancy} needed",
                        uncounted=uncounted)
    best = max(groups.items(), key=lambda kv: len(kv[1]), default=None)
    if best is not None and len(best[1]) >= redundancy:
        digest, winners = best
        return passing(digest, winners,
                       f"disagrees with the {len(winners)} provider(s) that agree")
    valid = sum(len(ids) for ids in groups.values())
    if len(groups) > 1 and valid >= redundancy:
        return Decision("tiebreak", (), failed, "",
                        f"{valid} valid results disagree ({len(groups)} different digests)",
                        uncounted=uncounted)
    note = (f" ({len(uncounted) - clear} more from providers not counted as distinct)"
            if len(uncounted) > clear else "")
    if clear:
        note += (f" ({clear} more sent in clear, which never count towards redundancy "
                 "K > 1: anyone could copy them)")
    if final:
        return Decision("reject", (), {**failed, **{rid: "too few agreeing results"
                                                    for ids in groups.values() for rid in ids}},
                        "", f"{len(best[1]) if best else 0} agreeing valid result(s), "
                        f"{redundancy} needed{note}", uncounted=uncounted)
    return Decision("wait", (), failed, "", f"{valid} valid result(s) of {redundancy}{note}",
                    uncounted=uncounted)
