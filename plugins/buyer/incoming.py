"""Incoming: feedback and results from providers, matched to their job and checked."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from oa_node.ledger import Record
from oa_node.nostr import kinds, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.escrow import fund
from oa_node.plugins.buyer.ledger import FINAL
from oa_node.plugins.buyer.verify import ResultCheck, check_result

log = logging.getLogger("oa_node.buyer")


def max_results(redundancy: int) -> int:
    """How many results one job records: enough for every honest answer and some
    second results to label, bounded so strangers' keys cannot grow a job without end."""
    return 4 * max(redundancy, 1) + 8

class Incoming:
    """Mixin of :class:`~oa_node.plugins.buyer.engine.Buyer`: the subscription's
    events, each recorded against the job it answers."""

    async def _consume(self, sub: Any, tg: anyio.abc.TaskGroup) -> None:
        async for _relay, event in sub:
            try:
                if event.kind == kinds.JOB_FEEDBACK:
                    job_id = self.on_feedback(event)
                    if job_id is not None and event.first_tag_value("status") == \
                            "payment-required":
                        tg.start_soon(self._safely, fund, self, job_id, event)
                else:
                    job_id = self.on_result_event(event)
                    if job_id is not None:
                        tg.start_soon(self._safely, self._on_result, job_id, event)
            except Exception:
                log.exception("event %s", event.id[:12])

    def _job_for(self, request_id: str) -> str | None:
        job_id = self._by_request.get(request_id)
        if job_id is None:
            self._reindex()
            job_id = self._by_request.get(request_id)
        return job_id

    def on_feedback(self, event: Event) -> str | None:
        """Record a provider's feedback; returns the job it belongs to (None: not ours)."""
        try:
            fb = nip90.parse_feedback(event)
        except ProtocolError:
            return None
        job_id = self._job_for(fb.request_id)
        if job_id is None:
            return None
        rec = self.ledger.get(job_id)
        if rec is None or rec.state in FINAL:
            return None
        info = {"provider": fb.provider, "status": fb.status, "info": fb.info,
                "at": event.created_at,
                "amount_msat": fb.amount.msat if fb.amount else None}
        if rec.state == "published":
            self._move(job_id, "feedback", {"feedback": event.id},
                       first_feedback_at=time.time())
        self.ledger.update(job_id, last_feedback=info)
        self._emit(job_id, "feedback", info)
        return job_id

    def on_result_event(self, event: Event) -> str | None:
        """The job a result event belongs to, if it is one we still wait for."""
        request_id = event.first_tag_value("e")
        if not request_id:
            return None
        job_id = self._job_for(request_id)
        if job_id is None:
            return None
        rec = self.ledger.get(job_id)
        if rec is None or rec.state not in ("published", "feedback", "result_received"):
            return None
        results = rec.data.get("results", {})
        if event.id in results:
            return None
        named = rec.data.get("providers") or ()
        if named and event.pubkey not in named:
            return None  # a job addressed to providers is none of anyone else's business
        if self.reputation.cheated(event.pubkey):
            log.info("job %s: result from %s ignored (caught cheating before)", job_id[:12],
                     event.pubkey[:12])
            return None
        if len(results) >= max_results(int(rec.data.get("redundancy", 1))):
            log.warning("job %s: result %s from %s ignored (result limit reached)",
                        job_id[:12], event.id[:12], event.pubkey[:12])
            return None
        return job_id

    async def _on_result(self, job_id: str, event: Event) -> None:
        received_at = time.time()
        async with self._lock(job_id):
            rec = self.ledger.get(job_id)
            if rec is None or event.id in rec.data.get("results", {}):
                return
            check = await self._check(rec, event)
            self.ledger.put(job_id, "results", event.id, {
                "event": event.to_dict(), "check": check.to_dict(), "received_at": received_at,
                "checked_secs": time.time() - received_at}, if_absent=True)
            if rec.state in ("published", "feedback"):
                self._move(job_id, "result_received",
                           {"result_id": event.id, "provider": event.pubkey},
                           first_result_at=received_at)
        self._emit(job_id, "result", check.to_dict())
        await self._evaluate(job_id)

    async def _check(self, rec: Record, event: Event) -> ResultCheck:
        try:
            result = nip90.parse_result(event)
        except ProtocolError as exc:
            return ResultCheck(event.id, event.pubkey, False, (f"malformed result: {exc}",))
        plaintext, error = result.content, None
        if result.encrypted:
            try:
                plaintext = await self.node.signer.nip44_decrypt(event.pubkey, result.content)
            except (ProtocolError, ValueError) as exc:
                plaintext, error = None, str(exc)
        return check_result(result, plaintext,
                            requests=[Event.from_dict(r) for r in rec.data["requests"]],
                            request_doc=rec.data["doc"], buyer=self.pubkey,
                            job_type=self.job_type(rec.data["schema"]), decrypt_error=error)
