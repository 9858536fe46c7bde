"""Real BOLT #11 invoices for the ledger wallet, encoded and signed by
:func:`oa_node.nostr.bolt11.encode` (a few hundred microseconds; the ``bolt11`` library
took milliseconds, on the path of every invoice and escrow hold).

Every invoice carries the ``n`` field (the ledger's node key) so any decoder can check its
signature without recovery, a random payment secret, and a payment hash whose preimage only
the ledger knows until the invoice is paid.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from coincurve import PrivateKey

from oa_node.nostr import bolt11 as bolt11_reader

MAX_DESCRIPTION_BYTES = 639  # longer descriptions go through a description hash (BOLT #11)


@dataclass(frozen=True)
class IssuedInvoice:
    bolt11: str
    payment_hash: str
    preimage: str
    created_at: int
    expires_at: int


def node_pubkey(node_secret: bytes) -> str:
    return PrivateKey(node_secret).public_key.format(compressed=True).hex()


def _check_hash(value: str, what: str) -> None:
    """Raise ValueError unless ``value`` is 32 bytes of hex (a SHA-256 digest)."""
    try:
        if len(bytes.fromhex(value)) != 32:
            raise ValueError
    except ValueError:
        raise ValueError(f"{what} must be 64 hex characters") from None


def issue_invoice(
    node_secret: bytes,
    amount_msat: int,
    *,
    description: str | None = None,
    description_hash: str | None = None,
    expiry: int = 3600,
    network: str = "bcrt",
    now: int | None = None,
    preimage: bytes | None = None,
    payment_hash: str | None = None,
) -> IssuedInvoice:
    """Encode and sign an invoice; exactly one of ``description``/``description_hash``.

    With ``payment_hash`` (a hold invoice: the payee's client keeps the preimage) the
    returned ``preimage`` is empty."""
    if amount_msat <= 0:
        raise ValueError("amount must be a positive number of msat")
    if description is not None and description_hash is not None:
        raise ValueError("give a description or a description hash, not both")
    if description is not None and len(description.encode()) > MAX_DESCRIPTION_BYTES:
        description_hash = hashlib.sha256(description.encode()).hexdigest()
        description = None
    if description_hash is not None:
        _check_hash(description_hash, "description hash")
    if expiry <= 0:
        raise ValueError("expiry must be a positive number of seconds")
    if payment_hash is not None:
        _check_hash(payment_hash, "payment hash")
        payment_hash = payment_hash.lower()
        preimage_hex = ""
    else:
        preimage = preimage or secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        preimage_hex = preimage.hex()
    created = int(time.time()) if now is None else now
    text = bolt11_reader.encode(
        node_secret=node_secret, amount_msat=amount_msat, payment_hash=payment_hash,
        payment_secret=secrets.token_hex(32), timestamp=created, expiry=expiry,
        description=None if description_hash is not None else (description or ""),
        description_hash=description_hash.lower() if description_hash is not None else None,
        network=network)
    decoded = bolt11_reader.decode(text)  # our own strict reader must accept what we issue
    if decoded.payment_hash != payment_hash or decoded.amount_msat != amount_msat:
        raise RuntimeError("issued invoice does not decode to what was encoded")
    return IssuedInvoice(text, payment_hash, preimage_hex, created, created + expiry)
