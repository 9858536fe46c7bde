"""Deciding: judge a job's results (redundancy, audit), then record and label it."""

from __future__ import annotations

import functools
import logging
import random
import time

from oa_node.ledger import Record
from oa_node.nostr import kinds, nip90
from oa_node.plugins.buyer.labels import label_template, planned_labels, verification_level
from oa_node.plugins.buyer.verify import Decision, ResultCheck
from oa_node.plugins.buyer.verify import decide as decide_

log = logging.getLogger("oa_node.buyer")


class Deciding:
    """Mixin of :class:`~oa_node.plugins.buyer.engine.Buyer`: from checked results to
    a verdict, the provider records and the NIP-32 labels."""

    async def _evaluate(self, job_id: str, final: bool = False) -> None:
        async with self._lock(job_id):
            rec = self.ledger.get(job_id)
            if rec is None:
                return
            if rec.state == "result_received":
                await self._judge(rec, final)
        rec = self.ledger.get(job_id)
        if rec is not None and rec.state == "verified":
            await self.pay(job_id)

    async def _judge(self, rec: Record, final: bool) -> None:
        t0 = time.monotonic()
        results = sorted(rec.data.get("results", {}).values(), key=lambda r: r["received_at"])
        checks = [ResultCheck.from_dict(r["check"]) for r in results]
        redundancy = int(rec.data.get("redundancy", 1))
        named = set(rec.data.get("providers") or ())
        if named and named <= {c.provider for c in checks}:
            final = True  # every provider the job named has answered: no one else will
        audit = rec.data.get("audit_digest")
        distinct = self._distinct(named, checks, redundancy)
        decide = functools.partial(decide_, distinct=distinct)
        decision = decide(checks, redundancy, final=final, audit_digest=audit)
        if decision.outcome == "tiebreak":
            if self.settings.audit_on_disagreement and not self._audit_tried(rec):
                audit = await self._audit(rec)
                if audit is not None:
                    decision = decide(checks, redundancy, final=final, audit_digest=audit)
            if decision.outcome == "tiebreak":
                if not final:
                    return  # another provider's result may still settle it
                # nobody can tell who is right: no payment, no label on anyone
                unavailable = self.ledger.get(rec.id).data.get("audit_unavailable")  # type: ignore[union-attr]
                why = (f"audit unavailable: {unavailable}" if unavailable else
                       "no audit (audit_on_disagreement is off)")
                decision = Decision("undecided", (), decision.failed, "",
                                    f"{decision.reason}; {why}")
        elif (decision.outcome == "pass" and audit is None and not self._audit_tried(rec)
              and self.settings.audit_rate > 0 and random.random() < self.settings.audit_rate):
            audit = await self._audit(rec)
            if audit is not None and audit != decision.digest:
                decision = decide(checks, redundancy, final=True, audit_digest=audit)
        if decision.outcome == "wait":
            return
        verdicts = {c.result_id: ("pass" if c.result_id in decision.passed else
                                  "surplus" if c.result_id in decision.surplus else
                                  "uncounted" if c.result_id in decision.uncounted else
                                  "fail" if c.result_id in decision.failed or
                                  decision.outcome != "undecided" else "undecided")
                    for c in checks}
        receipt = {"request_ids": rec.data.get("request_ids"), "verdicts": verdicts,
                   "failed": decision.failed, "digest": decision.digest,
                   "reason": decision.reason, "audit_digest": audit}
        target = {"pass": "verified", "undecided": "undecided"}.get(decision.outcome, "rejected")
        level = verification_level(decision.outcome, decision.digest, len(decision.passed),
                                   audit)
        receipt["level"] = level
        moved = self._move(rec.id, target, receipt, verdicts=verdicts, level=level,
                           failures=decision.failed, verified_at=time.time(),
                           verify_secs=time.monotonic() - t0 + sum(
                               r.get("checked_secs", 0) for r in results))
        if moved:
            log.info("job %s %s, %s (%s)", rec.id[:12], target, level,
                     decision.reason or decision.digest)
            self._emit(rec.id, target, receipt)
            if target != "verified":  # a verified job is labelled once its payment is done
                await self._publish_verdicts(rec.id)

    async def import_trusted_labels(self) -> int:
        """``[buyer] trust_labels_from``: their verdict labels join the provider record."""
        trusted = {k.lower() for k in self.settings.trust_labels_from}
        if not trusted:
            return 0
        found = await self.node.pool.query({"kinds": [kinds.LABEL], "authors": sorted(trusted),
                                            "#L": [nip90.VERDICT_NAMESPACE]}, 10)
        added = self.reputation.import_labels(found, trusted)
        log.info("imported %d verdict label(s) from %d trusted key(s)", added, len(trusted))
        return added

    def _distinct(self, named: set[str], checks: list[ResultCheck], redundancy: int
                  ) -> set[str] | None:
        """The providers whose agreement counts (``None``: all): at redundancy K > 1,
        unless ``[buyer] count_unknown_providers``, only the ones the job named and the
        ones known good here, since one actor can sign with any number of keys."""
        if redundancy <= 1 or self.settings.count_unknown_providers:
            return None
        return named | {c.provider for c in checks if self.reputation.known_good(c.provider)}

    async def _publish_verdicts(self, job_id: str) -> None:
        """After the whole decision (for a verified job: after the invoice checks and
        payments): the providers' records here, then the job's NIP-32 labels, once, each
        naming the level."""
        rec = self.ledger.get(job_id)
        if rec is None or rec.data.get("labelled"):
            return
        planned = planned_labels(rec.data)
        self.reputation.record(job_id, [(e.id, e.pubkey, label, level)
                                        for e, label, _, level in planned] +
                               [(rid, rec.data["results"][rid]["check"]["provider"],
                                 "undecided", "") for rid, v in rec.data["verdicts"].items()
                                if v == "undecided"])
        if not self.settings.publish_verdicts:
            return
        for event, label, reason, level in planned:
            try:
                signed = await self.node.signer.sign(label_template(
                    event, label, reason, level, rec.data["schema"], rec.id))
                await self._publish(signed)
            except Exception:
                log.exception("verdict label for %s not published", event.id[:12])
        self.ledger.update(job_id, labelled=True)
