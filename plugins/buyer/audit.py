"""Auditing: re-run a job on this node's own sandbox to settle or spot-check results."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from oa_node.errors import UserError
from oa_node.executors.jobtype import ExecContext, Execution, ExecutorSettings
from oa_node.ledger import Record

log = logging.getLogger("oa_node.buyer")


class Auditing:
    """Mixin of :class:`~oa_node.plugins.buyer.engine.Buyer`: the buyer's own re-run."""

    async def _audit(self, rec: Record) -> str | None:
        """Re-run the job on this node's own sandbox; its verification digest, or ``None``
        when the audit is unavailable: no sandbox here, or the re-run itself did no work
        (``error``/``cancelled``: e.g. this node refuses the URL scheme) or does not pass
        its own checks. An unavailable audit is no vote: it is recorded as such."""
        job_type = self.job_type(rec.data["schema"])
        try:
            if self._sandbox is None:
                self._sandbox = await anyio.to_thread.run_sync(self._make_sandbox)
            model = job_type.request_model.from_dict(rec.data["doc"])
            ctx = ExecContext(settings=self._exec_settings(), sandbox=self._sandbox,
                              provider_pubkey=self.pubkey, job_id=f"audit-{rec.id[:24]}")
            result = await anyio.to_thread.run_sync(job_type.executor, model, ctx,
                                                    abandon_on_cancel=True)
        except Exception as exc:
            return self._audit_unavailable(rec, f"{type(exc).__name__}: {exc}")
        doc = result.raw if getattr(result, "raw", None) is not None else result.to_dict()
        verdict = job_type.verifier(rec.data["doc"], doc)
        if not verdict.ok:
            return self._audit_unavailable(rec, "; ".join(verdict.problems))
        digest = verdict.verification_digest
        self.ledger.update(rec.id, audited=True, audit_digest=digest,
                           audit_status=doc.get("status"))
        self._emit(rec.id, "audit", {"digest": digest, "status": doc.get("status")})
        return digest

    def _audit_unavailable(self, rec: Record, reason: str) -> None:
        log.warning("job %s: audit unavailable here (%s)", rec.id[:12], reason[:300])
        self.ledger.update(rec.id, audit_unavailable=reason[:500])
        self._emit(rec.id, "audit", {"status": "unavailable", "reason": reason[:500]})

    @staticmethod
    def _audit_tried(rec: Record) -> bool:
        """An audit finished (its digest recorded) or could not run here; recorded only
        once it did, never when it starts."""
        return rec.data.get("audit_digest") is not None or bool(rec.data.get("audit_unavailable"))

    def _execution(self) -> Execution:
        execution = self.node.capability(Execution)
        if execution is None:
            raise UserError("no sandbox on this node (the sandbox plugin is disabled)")
        return execution

    def _make_sandbox(self) -> Any:
        return self._execution().sandbox()

    def _exec_settings(self) -> ExecutorSettings:
        return self._execution().executor_settings(workdir=self.node.data_dir / "audit-jobs")
