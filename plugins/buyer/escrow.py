"""Escrow for the buyer: funded before work, released after verification.

A job addressed to providers offers each one a payment hash (``["escrow", hash,
provider]`` in the request) whose preimage only the buyer knows, kept in its ledger. The
provider's wallet makes a hold invoice for that hash and asks for it (``payment-required``
feedback); the buyer checks it (the hash it offered, an amount within the bid and fee
budget) and pays it: the money is locked, nobody's yet, and the provider starts. When the
job passes verification the buyer sends the preimage, NIP-44 encrypted to that provider
(kind :data:`~oa_node.nostr.kinds.ESCROW_RELEASE`), and the provider settles; a ``fail``
verdict makes the provider cancel the hold, and a hold nobody settles is cancelled by the
wallet at its deadline: either way the money returns. Without hold support (the buyer's
wallet or the provider's) the job falls back to plain pay-after-verify.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from oa_node.nostr import bolt11, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.wallet import ErrorCode, WalletError

if TYPE_CHECKING:
    from oa_node.ledger import Record
    from oa_node.plugins.buyer.engine import Buyer

log = logging.getLogger("oa_node.buyer")


async def offer(buyer: Buyer, providers: list[str], followed: bool
                ) -> tuple[list[list[str]], dict[str, Any]]:
    """Request tags and the secrets to keep, one payment hash per named provider; nothing
    when ``[buyer] escrow`` is off, or auto and no buyer follows the job (``followed``:
    nobody would fund it, the provider would wait for nothing), when no provider is named,
    or when the wallet has no hold support (plain pay-after-verify)."""
    mode = buyer.settings.escrow
    wallet = buyer.settings.wallet(buyer.node)
    if mode == "off" or (mode == "auto" and not followed) or not providers or wallet is None:
        return [], {}
    try:
        if not await wallet.supports_holds():
            return [], {}
    except WalletError:
        return [], {}
    tags: list[list[str]] = []
    kept: dict[str, Any] = {}
    for p in providers:
        preimage = secrets.token_hex(32)
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        tags.append([nip90.ESCROW_TAG, payment_hash, p])
        kept[p] = {"preimage": preimage, "payment_hash": payment_hash}
    return tags, kept


async def fund(buyer: Buyer, job_id: str, event: Event) -> None:
    """Pay a provider's hold invoice for this job, once, if it is the one offered."""
    try:
        fb = nip90.parse_feedback(event)
    except ProtocolError:
        return
    rec = buyer.ledger.get(job_id)
    offered = ((rec.data.get("escrow") or {}) if rec is not None else {}).get(fb.provider)
    if rec is None or offered is None or fb.status != "payment-required" or fb.amount is None \
            or not fb.amount.bolt11 or rec.state not in ("published", "feedback"):
        return
    max_price = int(rec.data.get("max_price_msat", 0))
    try:
        inv = bolt11.decode(fb.amount.bolt11)
    except ProtocolError as exc:
        log.warning("job %s: escrow invoice unreadable: %s", job_id[:12], exc)
        return
    amount = inv.amount_msat if inv.amount_msat is not None else fb.amount.msat
    if inv.payment_hash != offered["payment_hash"] or \
            amount + buyer.settings.max_fee_msat > max_price or inv.is_expired():
        log.warning("job %s: escrow invoice from %s refused (hash, amount or expiry)",
                    job_id[:12], fb.provider[:12])
        return
    if not buyer.ledger.put(job_id, "funding", fb.provider, {
            "bolt11": fb.amount.bolt11, "payment_hash": inv.payment_hash,
            "amount_msat": amount, "at": time.time()}, if_absent=True):
        return  # already funded (a replayed feedback): one lock, never two
    wallet = buyer.settings.wallet(buyer.node)
    assert wallet is not None
    buyer._emit(job_id, "funding", {"provider": fb.provider, "amount_msat": amount})
    try:
        # resolves only when the hold is settled (after our release) or cancelled; a
        # timeout here leaves the lock in place, which is the point. The compare-and-set
        # above makes this the only request to pay this hold: no look-up first
        await wallet.pay_invoice(fb.amount.bolt11, first_attempt=True)
    except WalletError as exc:
        if exc.code == ErrorCode.PAYMENT_FAILED:
            log.info("job %s: escrow to %s refunded or refused (%s)", job_id[:12],
                     fb.provider[:12], exc)
        else:
            log.debug("job %s: escrow payment in flight (%s)", job_id[:12], exc)


async def release(buyer: Buyer, rec: Record, rid: str, event: Event) -> dict[str, Any] | None:
    """For a verified result whose invoice is the escrow hold: send the provider the
    preimage (idempotent: a repeat sends the same secret) and return the payment record;
    ``None`` when the result is not escrowed (pay it plainly)."""
    offered = (rec.data.get("escrow") or {}).get(event.pubkey)
    if offered is None or event.pubkey not in (rec.data.get("funding") or {}):
        return None
    try:
        amount = nip90.parse_result(event).amount
        inv = bolt11.decode(amount.bolt11) if amount and amount.bolt11 else None
    except ProtocolError:
        inv = None
    if inv is None or inv.payment_hash != offered["payment_hash"]:
        return None
    sealed = await buyer.node.signer.nip44_encrypt(event.pubkey, offered["preimage"])
    note = await buyer.node.signer.sign(nip90.release_template(
        event.first_tag_value("e") or rec.id, event.pubkey, sealed))
    res = await buyer._publish(note)
    if not res.ok:
        raise WalletError(ErrorCode.OTHER, "no relay took the escrow release")
    return {"provider": event.pubkey, "bolt11": amount.bolt11 if amount else "",
            "payment_hash": offered["payment_hash"], "preimage": offered["preimage"],
            "amount_msat": inv.amount_msat, "fees_paid_msat": 0, "escrow": True,
            "release": note.id, "at": time.time()}
