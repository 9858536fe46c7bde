"""The provider service: announce, take requests, run them, publish results, get paid.

One task listens for requests (5050 and the dedicated kinds, filtered by ``#t``), decides at
once whether to take each (addressed to us or open, schema served, not expired, bid not
below the price, decryptable and valid, room in the queue: otherwise a ``status error``
feedback says why) and records the decision in the ledger before anything else, so a
request re-delivered by a relay or seen again after a restart is never run twice. Workers
(``concurrency`` of them) run accepted jobs through the job type's executor in a thread and
publish the result with an invoice; a settlement loop marks results paid when the invoice
settles, or unpaid when it expires or the buyer's verdict says ``fail``.

Restart rules: ``accepted`` jobs (never started) are queued again; ``running`` jobs whose
result was already signed are re-published, the others are failed with an ``error``
feedback (they may have half run: running them again would run them twice);
``result_published`` jobs go back to waiting for payment.

Encrypted requests (NIP-44 to this provider) get no trajectory: NIP-SA sessions and steps
are public events that would tie the buyer (``p``), the repository (``repo``) and the
request id to this provider's work, and an encrypted trajectory would still show who worked
for whom and when. So an encrypted job publishes only what NIP-90 itself needs: the result
(content encrypted to the buyer; ``e``/``p``/``request`` tags bind it to the request, whose
content is ciphertext) and 7000 feedback (``e``/``p``; its free text in clear only when it
is a fixed word or the result id, anything else goes encrypted to the buyer in the
content).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.canonical import CanonicalJSONError, canonical_json, loads
from oa_node.errors import UserError
from oa_node.executors.jobtype import ExecContext, Execution, JobType
from oa_node.executors.schema import SchemaError
from oa_node.files import private_dir
from oa_node.ledger import Record, StateLedger, TransitionError
from oa_node.nostr import kinds, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.plugins.provider.settings import ProviderSettings
from oa_node.sandbox.base import CancelToken
from oa_node.trajectory import Trajectories
from oa_node.wallet import WalletError

if TYPE_CHECKING:
    from oa_node.node import Node
    from oa_node.sandbox.base import Sandbox

log = logging.getLogger("oa_node.provider")

FEEDBACK_TIMEOUT = 10.0
TRAJECTORY_TIMEOUT = 5.0
INVOICE_ATTEMPTS = 3  # a wallet that is briefly unreachable still gets to invoice


#: Feedback words that say nothing about an encrypted request's content.
PUBLIC_INFO = frozenset({"running", "queued", "busy", "paid", "internal error in the provider",
                         "expired before it could run", "encrypted to another provider",
                         "interrupted by a provider restart; not re-run"})
ENCRYPTED_INFO = "details encrypted to the buyer"


def _is_encrypted(request: Event) -> bool:
    return any(t and t[0] == "encrypted" for t in request.tags)


def _public_info(info: str) -> bool:
    """``info`` may be published in clear for an encrypted request."""
    if info in PUBLIC_INFO:
        return True
    word, _, rest = info.partition(" ")
    return word == "result" and len(rest) == 64 and all(c in "0123456789abcdef" for c in rest)


class BadRequest(Exception):
    """A request this provider cannot take; the message goes to the buyer."""


class Provider:
    """Runs until cancelled; ``ready`` is set once it announces and listens."""

    def __init__(self, node: Node, settings: ProviderSettings) -> None:
        self.node = node
        self.settings = settings
        self.ready = anyio.Event()
        self.ledger: StateLedger | None = None
        self.sandbox: Sandbox | None = None
        self.job_types: dict[str, JobType] = {}
        # accepted jobs wait here (ids, in order); workers take them one at a time
        self._send, self._receive = anyio.create_memory_object_stream[str](math.inf)
        self._waiting: set[str] = set()  # accepted, not yet taken by a worker
        self._active = 0  # taken by a worker
        self._running: dict[str, CancelToken] = {}
        self._settle_wakeup = anyio.Event()
        self._announcement: Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # --- identity and helpers -----------------------------------------------------------

    @property
    def pubkey(self) -> str:
        return self.node.signer.public_key

    @property
    def served(self) -> list[str]:
        return [s for s in self.settings.schemas if s in self.job_types]

    def request_kinds(self) -> list[int]:
        out = [kinds.JOB_REQUEST]
        if self.settings.dedicated_kinds:
            out += [nip90.DEDICATED_KINDS[s] for s in self.served if s in nip90.DEDICATED_KINDS]
        return out

    def _ledger(self) -> StateLedger:
        assert self.ledger is not None
        return self.ledger

    async def _publish(self, template: EventTemplate | Event, *, retry_for: float = 0.0) -> Event:
        """Sign (if needed) and publish; keep trying for ``retry_for`` seconds when no relay
        accepts (a relay restarting), with a bounded backoff."""
        event, _accepted = await self._try_publish(template, retry_for=retry_for)
        return event

    async def _try_publish(self, template: EventTemplate | Event, *,
                           retry_for: float = 0.0) -> tuple[Event, bool]:
        """:meth:`_publish` that also says whether any relay accepted the event."""
        event = template if isinstance(template, Event) else await self.node.signer.sign(template)
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            result = await self.node.pool.publish(event, FEEDBACK_TIMEOUT)
            if result.ok or time.monotonic() >= deadline:
                if not result.ok:
                    log.warning("event %s (kind %d) reached no relay: %s", event.id[:12],
                                event.kind, result.rejected)
                return event, result.ok
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _feedback(self, request: Event, status: str, info: str = "",
                        amount: nip90.Amount | None = None) -> None:
        """Publish a 7000. For an encrypted request only fixed words (or the id of the
        result, public anyway) go in clear; any other detail, which may quote the decrypted
        request, goes NIP-44 encrypted to the buyer in the content."""
        try:
            content, extra = "", []
            if info and _is_encrypted(request) and not _public_info(info):
                content = await self.node.signer.nip44_encrypt(request.pubkey, info)
                info, extra = ENCRYPTED_INFO, [["encrypted"]]
            await self._publish(nip90.feedback_template(request, status, info, amount=amount,
                                                        content=content, extra_tags=extra))
        except Exception:  # feedback is informative; a failure must not stop the job
            log.exception("feedback %s for %s not sent", status, request.id[:12])

    def _spawn(self, fn: Any, *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        node = self.node
        if not node.config["node"]["relays"]:
            raise UserError("[provider] enabled but [node] relays is empty: the provider "
                            "needs a relay to take jobs from")
        registered: dict[str, Any] = node.plugins.registries.job_types()
        self.job_types = {s: registered[s] for s in self.settings.schemas if s in registered}
        missing = [s for s in self.settings.schemas if s not in registered]
        if missing:
            log.warning("[provider] schemas %s have no registered job type; not served",
                        ", ".join(missing))
        if not self.served:
            raise UserError("[provider] serves no registered job type (check [provider] "
                            "schemas and that the sandbox plugin is loaded)")
        private_dir(node.data_dir)
        execution = node.capability(Execution)
        if execution is None:
            raise UserError("[provider] needs a sandbox to run jobs, and the sandbox plugin "
                            "is disabled")
        self.exec_settings = execution.executor_settings()
        self.sandbox = await anyio.to_thread.run_sync(execution.sandbox)
        self.ledger = open_provider_ledger(node.data_dir)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._recover()
                for i in range(self.settings.concurrency):
                    tg.start_soon(self._worker, name=f"provider-worker-{i}")
                tg.start_soon(self._settle_loop)
                tg.start_soon(self._listen_requests)
                tg.start_soon(self._listen_control)
                tg.start_soon(self._announce_loop, await self._announce())
                log.info("provider %s serving %s on %s", self.pubkey[:12],
                         ", ".join(self.served), ", ".join(node.pool.relays))
                self.ready.set()
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    async def _shutdown(self) -> None:
        for token in self._running.values():
            token.cancel()
        if self._announcement is not None:
            ann = self._announcement
            tags = [["e", ann.id], ["a", f"{ann.kind}:{ann.pubkey}:{ann.d_tag}"],
                    ["k", str(ann.kind)]]
            with anyio.move_on_after(5):
                try:
                    await self._publish(EventTemplate(kind=kinds.DELETION,
                                                      content="provider stopped", tags=tags))
                except Exception:
                    log.exception("announcement deletion not sent")
        if self.sandbox is not None:
            close = getattr(self.sandbox, "close", None)
            if close is not None:
                try:
                    await anyio.to_thread.run_sync(close)
                except Exception:
                    log.exception("closing the sandbox")
        if self.ledger is not None:
            self.ledger.close()

    # --- NIP-89 ---------------------------------------------------------------------------

    def announcement_template(self) -> EventTemplate:
        s = self.settings
        limits = self.exec_settings.max_limits
        return nip90.handler_template(
            s.identifier,
            {schema: s.price(schema) for schema in self.served},
            name=self.node.config["node"]["name"],
            about=s.about,
            limits={"max_memory_mb": limits.memory_mb, "max_cpus": limits.cpus,
                    "max_timeout_secs": limits.timeout_secs, "concurrency": s.concurrency,
                    "queue_bound": s.queue_bound,
                    "network_policies": list(self.exec_settings.allowed_network_policies)},
            relays=self.node.config["node"]["relays"],
            expiration=int(time.time()) + s.announce_ttl_secs,
            dedicated_kinds=s.dedicated_kinds,
        )

    async def _announce(self) -> bool:
        """Publish a fresh announcement; ``True`` when a relay accepted it."""
        self._announcement, accepted = await self._try_publish(self.announcement_template())
        return accepted

    async def _announce_loop(self, accepted: bool) -> None:
        """Re-announce every ``announce_interval_secs``; an announcement no relay took (the
        node's own relay still starting, a relay down) is retried sooner, backing off."""
        retry = 1.0
        while True:
            if accepted:
                retry = 1.0
                await anyio.sleep(self.settings.announce_interval_secs)
            else:
                await anyio.sleep(min(retry, self.settings.announce_interval_secs))
                retry = min(retry * 2, 60.0)
            try:
                accepted = await self._announce()
            except Exception:
                log.exception("announcement failed")
                accepted = False

    # --- intake ---------------------------------------------------------------------------

    async def _listen_requests(self) -> None:
        since = int(time.time()) - self.settings.lookback_secs
        filters = [{"kinds": self.request_kinds(), "#t": self.served, "since": since}]
        while True:
            async with self.node.pool.subscribe(filters) as sub:
                async for _relay, event in sub:
                    try:
                        await self.on_request(event)
                    except Exception:  # one bad request must not stop the provider
                        log.exception("request %s", event.id[:12])
            log.warning("request subscription ended on every relay; re-subscribing")
            await anyio.sleep(2)

    async def on_request(self, event: Event) -> str | None:
        """Decide about one request event; returns the state it was left in (None: not
        for us or seen before)."""
        try:
            job = nip90.parse_request(event)
        except ProtocolError:
            return None
        if job.schema not in self.served or not job.is_for(self.pubkey):
            return None
        if event.kind != kinds.JOB_REQUEST and event.kind not in self.request_kinds():
            return None
        ledger = self._ledger()
        if ledger.get(event.id) is not None:
            return None
        price = self.settings.price(job.schema)
        if not ledger.create(event.id, {"request": event.to_dict(), "schema": job.schema,
                                        "buyer": job.buyer, "price_msat": price,
                                        "received_at": time.time()}):
            return None
        if job.expiration is not None and job.expiration <= time.time():
            ledger.transition(event.id, "declined", {"reason": "expired"})
            return "declined"
        try:
            if job.bid_msat is not None and job.bid_msat < price:
                raise BadRequest(f"bid {job.bid_msat} msat is below the price {price} msat")
            self.admit(job.schema, await self.request_document(job))
            if self.load() >= self.settings.concurrency + self.settings.queue_bound:
                raise BadRequest("busy")
        except BadRequest as exc:
            ledger.transition(event.id, "declined", {"reason": str(exc)})
            self._spawn(self._feedback, event, "error", str(exc))
            return "declined"
        except Exception:  # e.g. a signer that fails to decrypt: refuse, never leave it
            log.exception("request %s", event.id[:12])
            ledger.transition(event.id, "declined", {"reason": "internal error"})
            self._spawn(self._feedback, event, "error", "internal error in the provider")
            return "declined"
        ledger.transition(event.id, "accepted", {"price_msat": price})
        self._enqueue(event.id)
        if self._active >= self.settings.concurrency:
            self._spawn(self._feedback, event, "processing", "queued")
        return "accepted"

    async def request_document(self, job: nip90.JobRequest) -> Any:
        """The request parsed by its schema (decrypted first when it was encrypted)."""
        content = job.content
        if job.encrypted:
            if self.pubkey not in job.providers:
                raise BadRequest("encrypted to another provider")
            try:
                content = await self.node.signer.nip44_decrypt(job.buyer, content)
            except (ProtocolError, ValueError) as exc:
                raise BadRequest(f"cannot decrypt the request: {exc}") from None
        try:
            doc = loads(content)
        except (CanonicalJSONError, ValueError, RecursionError) as exc:
            raise BadRequest(f"request content is not JSON: {exc}") from None
        try:
            return self.job_types[job.schema].request_model.from_dict(doc)
        except (SchemaError, ValueError, TypeError, RecursionError) as exc:
            raise BadRequest(f"invalid request: {exc}") from None

    def admit(self, schema: str, model: Any) -> None:
        """Raise :class:`BadRequest` when this provider's policy refuses the request (URL
        scheme, network, limits): it is refused before any work with an ``error`` feedback,
        never answered with a result and an invoice."""
        admit = getattr(self.job_types[schema], "admit", None)
        reason = admit(model, self.exec_settings) if admit is not None else None
        if reason:
            raise BadRequest(reason)

    def _enqueue(self, job_id: str) -> None:
        self._waiting.add(job_id)
        self._send.send_nowait(job_id)

    def load(self) -> int:
        """Jobs accepted and not finished: waiting for a worker or running."""
        return len(self._waiting) + self._active

    # --- running --------------------------------------------------------------------------

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

    async def _funded(self, job_id: str, request: Event, job: nip90.JobRequest, price: int
                      ) -> dict[str, Any] | bool | None:
        """Escrow: when the request offers it (a payment hash for this provider) and
        ``[provider] require_funding``, make a hold invoice for that hash, ask for it
        (``payment-required`` feedback) and wait until the buyer's payment is locked:
        work starts only once the money exists. Returns the hold's invoice fields,
        ``False`` when it was not funded before the request expired (never run), or
        ``None`` for plain pay-after-verify (no escrow offered, or no hold support)."""
        payment_hash = nip90.escrow_hash(request, self.pubkey)
        wallet = self.settings.wallet(self.node)
        if payment_hash is None or not self.settings.require_funding or price <= 0 \
                or wallet is None:
            return None
        try:
            if not await wallet.supports_holds():
                return None
        except WalletError:
            return None
        ledger = self._ledger()
        deadline = float(job.expiration or time.time() + self.settings.invoice_expiry_secs)
        rec = ledger.get(job_id)
        bolt11 = rec.data.get("hold_bolt11") if rec is not None else None
        try:
            if not bolt11:
                asked_at = time.time()
                inv = await wallet.make_hold_invoice(
                    price, payment_hash, description=f"oa-node job {job_id}",
                    expiry=max(60, int(deadline - time.time())))
                bolt11 = inv.bolt11
                ledger.update(job_id, hold_bolt11=bolt11, escrow=True,
                              hold_asked_at=asked_at, hold_made_at=time.time())
            await self._feedback(request, "payment-required", "escrow",
                                 nip90.Amount(price, bolt11))
            await wallet.wait_accepted(payment_hash, max(1.0, deadline - time.time()))
        except WalletError as exc:
            reason = f"not funded: {exc}"
            if ledger.get(job_id).state == "accepted":  # type: ignore[union-attr]
                ledger.transition(job_id, "failed", {"reason": reason})
            try:
                await wallet.cancel_hold_invoice(payment_hash)
            except WalletError:
                pass
            await self._feedback(request, "error", "not funded in time")
            return False
        if ledger.get(job_id).state != "accepted":  # type: ignore[union-attr]
            await self._cancel_hold(payment_hash)  # withdrawn meanwhile: refund
            return False
        log.info("job %s funded (hold %s locked)", job_id[:12], payment_hash[:12])
        return {"bolt11": bolt11, "payment_hash": payment_hash, "escrow": True,
                "invoice_expires_at": time.time() + 86400}

    def _refund(self, rec: Record) -> None:
        """A funded job that ends without a result: its hold goes back to the buyer."""
        if rec.data.get("escrow"):
            payment_hash = nip90.escrow_hash(Event.from_dict(rec.data["request"]), self.pubkey)
            if payment_hash:
                self._spawn(self._cancel_hold, payment_hash)

    async def _cancel_hold(self, payment_hash: str) -> None:
        wallet = self.settings.wallet(self.node)
        if wallet is None:
            return
        try:
            await wallet.cancel_hold_invoice(payment_hash)
        except WalletError as exc:
            log.warning("hold %s not cancelled: %s", payment_hash[:12], exc)

    async def on_release(self, event: Event) -> None:
        """The buyer's escrow release: the preimage of a hold this provider's result
        carries. Settling is idempotent (a replayed release settles nothing twice)."""
        request_id = event.first_tag_value("e")
        ledger = self._ledger()
        rec = ledger.get(request_id or "")
        if rec is None or rec.data.get("buyer") != event.pubkey or not rec.data.get("escrow"):
            return
        try:
            preimage = await self.node.signer.nip44_decrypt(event.pubkey, event.content)
            ok = hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == rec.data["payment_hash"]
        except (ProtocolError, ValueError, KeyError):
            ok = False
        if not ok:
            log.warning("job %s: an escrow release without the right preimage", rec.id[:12])
            return
        if not rec.data.get("release_preimage"):
            # kept first: a wallet that is down now (killed, restarting) is settled later
            # by settle_once, instead of the hold expiring into a refund of verified work
            ledger.update(rec.id, release_preimage=preimage)
        await self._settle_hold(rec.id, preimage)

    async def _settle_hold(self, job_id: str, preimage: str) -> bool:
        """Ask the wallet to settle a released hold (idempotent there); ``False`` when it
        did not answer or refused, to be tried again by the settlement loop."""
        wallet = self.settings.wallet(self.node)
        if wallet is None:
            return False
        try:
            await wallet.settle_hold_invoice(preimage)
        except WalletError as exc:
            log.warning("job %s: hold not settled (%s)", job_id[:12], exc)
            return False
        ledger = self._ledger()
        rec = ledger.get(job_id)
        if rec is not None and not rec.data.get("hold_settled_at"):
            ledger.update(job_id, hold_settled_at=time.time())
        self._settle_wakeup.set()
        return True

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

    async def _invoice(self, job_id: str, price: int) -> tuple[nip90.Amount, dict[str, Any]]:
        wallet = self.settings.wallet(self.node)
        if wallet is None or price <= 0:
            reason = "no wallet configured" if wallet is None else "free job"
            return nip90.Amount(price), {"invoice_error": reason}
        for attempt in range(INVOICE_ATTEMPTS):
            try:
                inv = await wallet.make_invoice(price, description=f"oa-node job {job_id}",
                                                expiry=self.settings.invoice_expiry_secs)
                break
            except WalletError as exc:
                if attempt + 1 < INVOICE_ATTEMPTS:
                    log.info("job %s: invoice failed (%s); retrying", job_id[:12], exc)
                    await anyio.sleep(2.0 * (attempt + 1))
                    continue
                log.warning("job %s: no invoice (%s); result carries the amount only",
                            job_id[:12], exc)
                return nip90.Amount(price), {"invoice_error": str(exc)}
        return nip90.Amount(price, inv.bolt11), {
            "bolt11": inv.bolt11, "payment_hash": inv.payment_hash,
            "invoice_expires_at": time.time() + self.settings.invoice_expiry_secs}

    # --- trajectories (optional) ------------------------------------------------------------

    async def _start_trajectory(self, job: nip90.JobRequest, model: Any) -> Any:
        traj = (self.node.capability(Trajectories) if self.settings.record_trajectories
                else None)
        if traj is None or job.encrypted:  # see the module docstring: nothing in clear
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

    # --- settlement ------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        while True:
            with anyio.move_on_after(self.settings.settle_poll_secs):
                await self._settle_wakeup.wait()
            self._settle_wakeup = anyio.Event()
            try:
                await self.settle_once()
            except Exception:
                log.exception("settlement check failed")

    async def settle_once(self) -> None:
        ledger = self._ledger()
        wallet = self.settings.wallet(self.node)
        for rec in ledger.in_states("result_published"):
            payment_hash = rec.data.get("payment_hash")
            if not payment_hash or wallet is None:
                ledger.transition(rec.id, "unpaid", {"reason": "no wallet to check payment"})
                continue
            try:
                inv = await wallet.lookup_invoice(payment_hash)
            except WalletError as exc:
                log.debug("lookup %s: %s", payment_hash[:12], exc)
                continue
            if inv.settled:
                if ledger.transition(rec.id, "paid", {"payment_hash": payment_hash,
                                                      "preimage": inv.preimage,
                                                      "amount_msat": inv.amount_msat},
                                     paid_at=time.time()):
                    request = Event.from_dict(rec.data["request"])
                    self._spawn(self._feedback, request, "success", "paid")
            elif inv.accepted and rec.data.get("release_preimage"):
                await self._settle_hold(rec.id, rec.data["release_preimage"])  # retried
            elif inv.state in ("expired", "failed") or time.time() > float(
                    rec.data.get("invoice_expires_at") or float("inf")):
                ledger.transition(rec.id, "unpaid", {"reason": f"invoice {inv.state}"})

    # --- deletions and verdicts ---------------------------------------------------------------

    async def _listen_control(self) -> None:
        since = int(time.time()) - self.settings.lookback_secs
        filters = [
            {"kinds": [kinds.DELETION], "#k": [str(k) for k in self.request_kinds()],
             "since": since},
            {"kinds": [kinds.LABEL], "#p": [self.pubkey], "#L": [nip90.VERDICT_NAMESPACE],
             "since": since},
            # a release sent while this provider was down must still settle its hold
            {"kinds": [kinds.ESCROW_RELEASE], "#p": [self.pubkey], "since": min(
                [since] + [int(r.created_at) - 60 for r in
                           self._ledger().in_states("result_published")
                           if r.data.get("escrow")])},
        ]
        while True:
            async with self.node.pool.subscribe(filters) as sub:
                async for _relay, event in sub:
                    try:
                        if event.kind == kinds.DELETION:
                            await self.on_deletion(event)
                        elif event.kind == kinds.ESCROW_RELEASE:
                            await self.on_release(event)
                        else:
                            self.on_verdict(event)
                    except Exception:
                        log.exception("control event %s", event.id[:12])
            await anyio.sleep(2)

    async def on_deletion(self, event: Event) -> None:
        """The buyer withdrew a request (NIP-09): drop it if queued, stop it if running."""
        ledger = self._ledger()
        for target in event.tag_values("e"):
            rec = ledger.get(target)
            if rec is None or rec.data.get("buyer") != event.pubkey:
                continue
            if rec.state in ("accepted", "running"):
                ledger.transition(target, "cancelled", {"deletion": event.id})
                self._refund(rec)
                self._waiting.discard(target)
                token = self._running.get(target)
                if token is not None:
                    token.cancel()
                log.info("job %s cancelled by its buyer", target[:12])

    def on_verdict(self, event: Event) -> None:
        parsed = nip90.parse_verdict(event)
        if parsed is None or parsed[2] != self.pubkey:
            return
        verdict, result_id, _ = parsed
        for rec in self._ledger().in_states("result_published"):
            if rec.data.get("result_id") != result_id or rec.data.get("buyer") != event.pubkey:
                continue
            if verdict in ("fail", "refused"):
                self._ledger().transition(rec.id, "unpaid", {"reason": f"buyer's verdict: "
                                                             f"{verdict}",
                                                             "verdict": event.id,
                                                             "detail": event.content[:500]})
                if rec.data.get("escrow"):  # the locked funds go back to the buyer
                    self._spawn(self._cancel_hold, rec.data["payment_hash"])
            else:
                self._settle_wakeup.set()

    # --- restart ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        ledger = self._ledger()
        for rec in ledger.in_states("received"):  # stopped between recording and deciding
            ledger.transition(rec.id, "declined", {"reason": "provider stopped before "
                                                   "deciding; not taken"})
        for rec in ledger.in_states("running"):
            await self._recover_running(rec)
        for rec in ledger.in_states("accepted"):
            self._enqueue(rec.id)
        if ledger.in_states("result_published"):
            self._settle_wakeup.set()

    async def _recover_running(self, rec: Record) -> None:
        ledger = self._ledger()
        request = Event.from_dict(rec.data["request"])
        if rec.data.get("result_event"):
            log.info("job %s: re-publishing its signed result after a restart", rec.id[:12])
            event = Event.from_dict(rec.data["result_event"])
            try:
                await self._publish_result(rec.id, event)
            except TransitionError:
                pass
            return
        ledger.transition(rec.id, "failed", {"reason": "interrupted by a provider restart"})
        self._refund(rec)
        log.warning("job %s was running when the provider stopped: failed, not re-run",
                    rec.id[:12])
        self._spawn(self._feedback, request, "error",
                    "interrupted by a provider restart; not re-run")
