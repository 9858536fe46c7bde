"""Paying verified results (a mixin of :class:`~oa_node.plugins.buyer.engine.Buyer`).

Every verified result of a job is paid once, at most ``redundancy`` of them: an escrowed
one by releasing its preimage, any other by paying its invoice after the checks (the bid
and the fee budget, the invoice matching its amount tag, not expired). A payment whose
answer was lost is looked up in the wallet before the invoice is judged again; every
entry is written with ``put`` (one field, one transaction). The job's labels go out after
all of it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from oa_node.nostr import bolt11, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.escrow import release
from oa_node.wallet import ErrorCode, WalletError, preimage_matches

if TYPE_CHECKING:
    from oa_node.ledger import Record

log = logging.getLogger("oa_node.buyer")

#: wallet answers that no retry will change; anything else (no answer, no relay, rate
#: limits, low balance) is retried until the invoice expires
PERMANENT = {ErrorCode.BAD_REQUEST, ErrorCode.NOT_IMPLEMENTED, ErrorCode.UNAUTHORIZED,
             ErrorCode.RESTRICTED, ErrorCode.UNSUPPORTED_ENCRYPTION, ErrorCode.PAYMENT_FAILED}


class Paying:
    """The paying half of the buyer engine (it provides ledger, settings, node, _lock,
    _move, _emit and _publish_verdicts)."""

    ledger: Any
    settings: Any
    node: Any

    async def pay(self, job_id: str) -> None:
        """Pay every verified result of a ``verified`` job, once; safe to call again."""
        async with self._lock(job_id):
            rec = self.ledger.get(job_id)
            if rec is None or rec.state != "verified":
                return
            await self._pay(rec)

    async def _pay(self, rec: Record) -> None:
        wallet = self.settings.wallet(self.node)
        # at most ``redundancy`` payments per job, whatever the verdicts say
        passed = [rid for rid, v in rec.data.get("verdicts", {}).items()
                  if v == "pass"][:max(1, int(rec.data.get("redundancy", 1)))]
        # a local view for the loop; every entry is written with put (one field, one
        # transaction), so nothing another writer recorded meanwhile is lost
        payments: dict[str, Any] = dict(rec.data.get("payments", {}))
        refusals: dict[str, str] = dict(rec.data.get("refusals", {}))
        max_price = int(rec.data.get("max_price_msat", 0))
        for rid in passed:
            if rid in payments or rid in refusals:
                continue
            event = Event.from_dict(rec.data["results"][rid]["event"])
            try:
                released = await release(self, rec, rid, event)
            except WalletError as exc:  # no relay took it: retried like a payment
                self.ledger.update(rec.id, pay_error=str(exc), pay_error_at=time.time())
                return
            if released is not None:
                payments[rid] = released
                self.ledger.put(rec.id, "payments", rid, released)
                continue
            # no "paying" mark: this buyer never asked to pay this result (the mark is
            # written before every request), so the wallet need not look for an earlier one
            first = not (rec.data.get("paying") or {}).get(rid)
            earlier = await self._paid_before(wallet, rec, rid, event)
            if earlier is not None:
                payments[rid] = earlier
                self.ledger.put(rec.id, "payments", rid, earlier)
                self.ledger.update(rec.id, pay_error=None)
                continue
            reason, invoice = self._payable(event, max_price, self.settings.max_fee_msat)
            if reason is None and wallet is None:
                reason = "no wallet configured on this node"
            if reason is not None:
                refusals[rid] = reason
                self.ledger.put(rec.id, "refusals", rid, reason)
                continue
            assert invoice is not None
            self.ledger.put(rec.id, "paying", rid, invoice.payment_hash)
            self.ledger.update(rec.id, pay_started_at=time.time())
            try:
                payment = await wallet.pay_invoice(invoice.bolt11,  # type: ignore[union-attr]
                                                   max_fee_msat=self.settings.max_fee_msat,
                                                   first_attempt=first)
            except WalletError as exc:
                expired = invoice.expires_at <= time.time()
                if exc.code not in PERMANENT and not expired:
                    log.warning("job %s: payment to %s failed for now (%s); will retry",
                                rec.id[:12], event.pubkey[:12], exc)
                    self.ledger.update(rec.id, pay_error=str(exc), pay_error_at=time.time())
                    self._emit(rec.id, "pay_error", {"error": str(exc)})
                    return
                refusals[rid] = f"payment failed: {exc}"
                self.ledger.put(rec.id, "refusals", rid, refusals[rid])
                continue
            payments[rid] = {"provider": event.pubkey, "bolt11": invoice.bolt11,
                             "payment_hash": payment.payment_hash,
                             "preimage": payment.preimage, "amount_msat": payment.amount_msat,
                             "fees_paid_msat": payment.fees_paid_msat, "at": time.time()}
            self.ledger.put(rec.id, "payments", rid, payments[rid])
            self.ledger.update(rec.id, pay_error=None)
        await self._publish_verdicts(rec.id)
        if payments:
            moved = self._move(rec.id, "paid", {"payments": payments, "refusals": refusals},
                               paid_at=time.time())
        else:
            moved = self._move(rec.id, "refused", {"refusals": refusals})
        if moved:
            state = "paid" if payments else "refused"
            log.info("job %s %s", rec.id[:12], state)
            self._emit(rec.id, state, {"payments": payments, "refusals": refusals})

    async def _paid_before(self, wallet: Any, rec: Record, rid: str, event: Event
                           ) -> dict[str, Any] | None:
        """The payment an earlier attempt made, when its answer was lost (a timeout, a
        crash): asked of the wallet before the invoice is judged again, because by now it
        may have expired, and an expired invoice that was paid must not end ``refused``."""
        payment_hash = (rec.data.get("paying") or {}).get(rid)
        if wallet is None or not payment_hash:
            return None
        try:
            found = await wallet.lookup_invoice(payment_hash)
        except WalletError:  # not found (never paid) or no answer: judge and pay as usual
            return None
        if found.type != "outgoing" or not found.settled or not found.preimage:
            return None
        if not preimage_matches(found.preimage, payment_hash):
            log.warning("job %s: the wallet reports %s paid without a valid preimage",
                        rec.id[:12], payment_hash[:12])
            return None
        log.info("job %s: an earlier payment of %s went through", rec.id[:12], payment_hash[:12])
        return {"provider": event.pubkey, "bolt11": found.bolt11,
                "payment_hash": payment_hash, "preimage": found.preimage,
                "amount_msat": found.amount_msat, "fees_paid_msat": found.fees_paid_msat,
                "at": time.time()}

    @staticmethod
    def _payable(event: Event, max_price: int, max_fee: int = 0) -> tuple[str | None, Any]:
        """(refusal reason or None, decoded invoice) for a verified result's amount tag.

        The amount plus the routing fee allowed (``[buyer] max_fee_msat``) must fit in the
        bid: NIP-47 ``pay_invoice`` has no fee limit, so the only cap a buyer has on what
        a job costs it is to budget the fee inside the bid before paying."""
        try:
            amount = nip90.parse_result(event).amount
        except ProtocolError as exc:
            return f"bad amount: {exc}", None
        if amount is None:
            return "the result names no amount", None
        if amount.msat > max_price:
            return f"asks {amount.msat} msat, more than the bid of {max_price} msat", None
        if amount.msat + max_fee > max_price:
            return (f"asks {amount.msat} msat: with the {max_fee} msat routing fee allowed "
                    f"([buyer] max_fee_msat) that is more than the bid of {max_price} msat"
                    ), None
        if not amount.bolt11:
            return "no invoice attached (the provider has no wallet)", None
        try:
            inv = bolt11.decode(amount.bolt11)
        except ProtocolError as exc:
            return f"invalid invoice: {exc}", None
        if inv.amount_msat is not None and inv.amount_msat != amount.msat:
            return (f"invoice is for {inv.amount_msat} msat, the amount tag says "
                    f"{amount.msat}"), None
        if inv.is_expired():
            return "the invoice has expired", None
        return None, inv
