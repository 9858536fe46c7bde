"""Running: workers run accepted jobs through their executor and publish the answer."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from oa_node.canonical import canonical_json
from oa_node.executors.jobtype import ExecContext
from oa_node.nostr import nip90
from oa_node.nostr.event import Event
from oa_node.plugins.provider.intake import BadRequest
from oa_node.sandbox.base import CancelToken
from oa_node.trajectory import Trajectories

log = logging.getLogger("oa_node.provider")


TRAJECTORY_TIMEOUT = 5.0


class Runner:
    """Mixin of :class:`~oa_node.plugins.provider.service.Provider`: workers, the
    executor call, the signed result and its optional NIP-SA trajectory."""

    async def _worker(self) -> None:
        async for job_id in self._receive:
            if job_id not in self._waiting:
                continue  # cancelled while it waited
            self._waiting.discard(job_id)
            self._active += 1
            try:
                await self._run_job(job_id)
            except Exception:
                log.exception("job %s failed in the provider", job_id[:12])
                rec = self._ledger().get(job_id)
                if rec is not None and rec.state in ("accepted", "running"):
                    self._ledger().transition(job_id, "failed",
                                              {"reason": "internal error in the provider"})
                    self._refund(rec)
                    request = Event.from_dict(rec.data["request"])
                    await self._feedback(request, "error", "internal error in the provider")
            finally:
                self._active -= 1

    async def _run_job(self, job_id: str) -> None:
        ledger = self._ledger()
        rec = ledger.get(job_id)
        if rec is None or rec.state != "accepted":
            return  # cancelled while queued
        request = Event.from_dict(rec.data["request"])
        job = nip90.parse_request(request)
        if job.expiration is not None and job.expiration <= time.time():
            ledger.transition(job_id, "failed", {"reason": "expired before it could run"})
            await self._feedback(request, "error", "expired before it could run")
            return
        job_type = self.job_types[job.schema]
        try:
            model = await self.request_document(job)
        except BadRequest as exc:
            ledger.transition(job_id, "failed", {"reason": str(exc)})
            await self._feedback(request, "error", str(exc))
            return
        price = int(rec.data.get("price_msat", 0))
        hold = await self._funded(job_id, request, job, price)
        if hold is False:
            return  # not funded in time (or cancelled meanwhile): never run
        token = CancelToken()
        self._running[job_id] = token
        side: dict[str, Any] = {}

        async def prepare_invoice() -> None:
            if isinstance(hold, dict):  # escrow: the result carries the locked hold invoice
                side["invoice"] = (nip90.Amount(price, hold["bolt11"]), hold)
            else:
                side["invoice"] = await self._invoice(job_id, price)

        async def start_trajectory() -> None:
            side["recorder"] = await self._start_trajectory(job, model)

        try:
            ledger.transition(job_id, "running", started_at=time.time())
            self._spawn(self._feedback, request, "processing", "running")
            ctx = ExecContext(settings=self.exec_settings, sandbox=self.sandbox,
                              provider_pubkey=self.pubkey, cancel=token, job_id=job_id[:32])
            # the invoice and the trajectory's opening events are made while the job runs,
            # so neither adds to its latency
            async with anyio.create_task_group() as tg:
                tg.start_soon(prepare_invoice)
                tg.start_soon(start_trajectory)
                t0 = time.monotonic()
                try:
                    result = await anyio.to_thread.run_sync(job_type.executor, model, ctx,
                                                            abandon_on_cancel=True)
                except BaseException:
                    token.cancel()
                    raise
                exec_secs = time.monotonic() - t0
            doc = result.raw if getattr(result, "raw", None) is not None else result.to_dict()
            traj_tags = await self._end_trajectory(side.get("recorder"), doc)
            if token.cancelled:
                return  # cancelled by the buyer meanwhile: state already says so
            if doc.get("status") in ("error", "cancelled"):
                # the job could not be run as asked (fetch failed, image missing ...): that
                # is an error feedback, not a result with an invoice for work never done
                reason = str(doc.get("error") or f"the job ended {doc.get('status')}")[:2000]
                ledger.transition(job_id, "failed", {"reason": reason}, status=doc["status"])
                self._refund(ledger.get(job_id))  # type: ignore[arg-type]
                await self._feedback(request, "error", reason)
                return
            amount, invoice = side["invoice"]
            await self._answer(job_id, request, job, doc, exec_secs, traj_tags, amount,
                               invoice)
        finally:
            self._running.pop(job_id, None)

    async def _answer(self, job_id: str, request: Event, job: nip90.JobRequest,
                      doc: dict[str, Any], exec_secs: float, traj_tags: list[list[str]],
                      amount: nip90.Amount, invoice: dict[str, Any]) -> None:
        """Sign the result with its invoice, store it, publish it, then say so."""
        ledger = self._ledger()
        content = canonical_json(doc)
        sealed = job.encrypted or nip90.wants_encrypted_result(request)
        if sealed:  # the buyer asked: nobody else can read (and copy) the result
            content = await self.node.signer.nip44_encrypt(job.buyer, content)
        template = nip90.result_template(request, content, job.schema, amount=amount,
                                         encrypted=sealed, extra_tags=traj_tags)
        event = await self.node.signer.sign(template)
        ledger.update(job_id, result_event=event.to_dict(), exec_secs=exec_secs,
                      finished_at=time.time(), status=doc.get("status"), **invoice)
        await self._publish_result(job_id, event)

    async def _publish_result(self, job_id: str, event: Event) -> None:
        ledger = self._ledger()
        await self._publish(event, retry_for=self.settings.publish_retry_secs)
        rec = ledger.get(job_id)
        assert rec is not None
        ledger.transition(job_id, "result_published", {
            "result_id": event.id, "invoice": rec.data.get("bolt11"),
            "payment_hash": rec.data.get("payment_hash"), "status": rec.data.get("status")},
            result_id=event.id, published_at=time.time())
        request = Event.from_dict(rec.data["request"])
        status = rec.data.get("status")
        feedback = {"success": "success", "failed": "success", "timeout": "partial",
                    "cancelled": "partial"}.get(str(status), "error")
        amount = nip90.Amount(int(rec.data.get("price_msat", 0)), rec.data.get("bolt11"))
        self._spawn(self._feedback, request, feedback, f"result {event.id}", amount)
        if not rec.data.get("payment_hash"):
            ledger.transition(job_id, "unpaid", {"reason": rec.data.get("invoice_error")
                                                 or "no wallet configured: nothing to pay"})
        else:
            self._settle_wakeup.set()

    # --- trajectories (optional) ------------------------------------------------------------

    async def _start_trajectory(self, job: nip90.JobRequest, model: Any) -> Any:
        traj = (self.node.capability(Trajectories) if self.settings.record_trajectories
                else None)
        if traj is None or job.encrypted:  # see service.py's docstring: nothing in clear
            return None
        repo = getattr(getattr(model, "repo", None), "source", None) or getattr(
            model, "repo_url", None)
        rec = None
        try:
            # recording must never hold a job up: a relay that does not answer costs a
            # bounded wait, then the job runs without a trajectory
            with anyio.fail_after(TRAJECTORY_TIMEOUT):
                rec = await traj.start(participants=[job.buyer], repo=repo)
                await rec.record("tool_start", {"tool": job.schema, "request": job.id})
            return rec
        except Exception as exc:  # TimeoutError included
            log.warning("job %s: no trajectory (%s)", job.id[:12], exc or "timeout")
            return None

    async def _end_trajectory(self, recorder: Any, doc: dict[str, Any]) -> list[list[str]]:
        if recorder is None:
            return []
        try:
            prov = doc.get("provenance") or {}
            with anyio.fail_after(TRAJECTORY_TIMEOUT * 2):
                await recorder.record("tool", {"status": doc.get("status"),
                                               "output_sha256": prov.get("output_sha256")})
                ref = await recorder.end({"status": doc.get("status")})
            return list(ref.tags())
        except Exception as exc:  # TimeoutError included
            log.warning("trajectory %s not completed (%s)", recorder.session_id,
                        exc or "timeout")
            return []
