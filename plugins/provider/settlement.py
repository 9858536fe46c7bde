"""Settlement: invoices, escrow holds, payment checks and the buyer's control events."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import anyio

from oa_node.ledger import Record
from oa_node.nostr import kinds, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.wallet import WalletError

log = logging.getLogger("oa_node.provider")


INVOICE_ATTEMPTS = 3  # a wallet that is briefly unreachable still gets to invoice


class Settlement:
    """Mixin of :class:`~oa_node.plugins.provider.service.Provider`: getting paid (plain
    invoices and escrow holds) and acting on deletions, releases and verdicts."""

    # --- invoices and escrow ----------------------------------------------------------------

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
        if rec is not None and rec.state == "result_published":
            # the wallet settled the hold: that is the payment, no look-up needed to know
            self._mark_paid(rec, rec.data.get("payment_hash") or "", preimage,
                            int(rec.data.get("price_msat", 0)))
        else:  # the release came before our own bookkeeping did: the loop finishes it
            self._settle_wakeup.set()
        return True

    def _mark_paid(self, rec: Record, payment_hash: str, preimage: str | None,
                   amount_msat: int) -> None:
        """``result_published -> paid`` (once) and the public "paid" feedback."""
        if self._ledger().transition(rec.id, "paid", {"payment_hash": payment_hash,
                                                       "preimage": preimage,
                                                       "amount_msat": amount_msat},
                                     paid_at=time.time()):
            self._spawn(self._feedback, Event.from_dict(rec.data["request"]), "success",
                        "paid")

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
                self._mark_paid(rec, payment_hash, inv.preimage, inv.amount_msat)
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
