"""Intake: take or refuse each request at once, and record the decision before any work."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from oa_node.canonical import CanonicalJSONError, loads
from oa_node.executors.schema import SchemaError
from oa_node.nostr import kinds, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event

log = logging.getLogger("oa_node.provider")



class BadRequest(Exception):
    """A request this provider cannot take; the message goes to the buyer."""


class Intake:
    """Mixin of :class:`~oa_node.plugins.provider.service.Provider`: the request
    subscription, admission and the queue of accepted jobs."""

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
