"""The :class:`Wallet` and :class:`Zapper` capabilities: what a plugin may ask of the
node's money.

A plugin finds the configured wallet with ``node.capability(Wallet)`` (today an NWC client
provided by the ``nwc`` plugin) and the zapper with ``node.capability(Zapper)`` (from the
``zaps`` plugin). Both are plain Protocols so the marketplace, GitAfter bounties and tests
depend on this module only.

``node.capability(Wallet)`` is the node's default wallet; ``node.capability(Wallet, name)``
is the named account ``name`` (``[wallet.accounts]`` in the ``nwc`` plugin). Accounts let
one node run roles that must not pay themselves (a provider earning into one account, a
buyer spending from another); a role chooses with its own ``wallet_account`` key (``""`` =
the default wallet) and treats a named account that is absent as a config error, never as
"no wallet".

Every failure is a :class:`WalletError` whose ``code`` is a NIP-47 error code (or one of the
local codes below), so a caller can branch on ``exc.code`` whatever wallet sits behind it.
Paying is idempotent at the wallet: paying the same invoice twice pays once and answers the
recorded result, so a settlement step retried after a crash is safe.

Hold invoices (escrow: funds locked before work, released after verification), NIP-47
``make_hold_invoice``/``settle_hold_invoice``/``cancel_hold_invoice``:

1. The buyer picks a 32-byte ``preimage`` and sends ``sha256(preimage)`` (the payment hash).
2. The payee calls ``make_hold_invoice(amount, payment_hash, ...)`` -> an :class:`Invoice`
   (``state="pending"``) whose bolt11 it gives the payer.
3. The payer calls ``pay_invoice(bolt11)``: its wallet locks the amount. As on Lightning
   this call returns only when the hold is *resolved* (settled: the preimage; cancelled or
   expired: ``PAYMENT_FAILED``), so run it in a task with a long timeout, or let it time
   out (``TIMEOUT``) and follow it with ``lookup_invoice(payment_hash)`` on the payer's
   side (an ``outgoing`` transaction, ``pending`` while locked, ``settled``, or ``failed``
   when refunded). Paying it again is safe (the same lock, never a second one).
4. The payee learns the funds are locked with ``wait_accepted(payment_hash, timeout)``
   (the ``hold_invoice_accepted`` notification, or lookups: ``state="accepted"``,
   ``settle_deadline`` set) and only then works.
5. ``settle_hold_invoice(preimage)`` (the payee, once given the preimage) moves the locked
   amount to the payee; ``cancel_hold_invoice(payment_hash)`` returns it to the payer; a
   hold not settled by its deadline is cancelled by the wallet. Both calls are idempotent
   (repeating the step taken answers success; the other step then fails).

A wallet without hold support answers ``NOT_IMPLEMENTED`` (check ``supports_holds()``
first and fall back to plain pay-after-verify).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oa_node.errors import UserError

if TYPE_CHECKING:
    from oa_node.node import Node
    from oa_node.nostr.event import Event


class ErrorCode(enum.StrEnum):
    """NIP-47 error codes, plus local ones (marked) for failures before the wallet answers."""

    RATE_LIMITED = "RATE_LIMITED"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RESTRICTED = "RESTRICTED"
    UNAUTHORIZED = "UNAUTHORIZED"
    INTERNAL = "INTERNAL"
    UNSUPPORTED_ENCRYPTION = "UNSUPPORTED_ENCRYPTION"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    NOT_FOUND = "NOT_FOUND"
    OTHER = "OTHER"
    # local: the request never got an answer in time
    TIMEOUT = "TIMEOUT"
    # local: the input (invoice, amount, URI) is malformed; nothing was sent
    BAD_REQUEST = "BAD_REQUEST"

    @classmethod
    def parse(cls, value: object) -> ErrorCode:
        """Map a code received from a wallet; unknown codes become ``OTHER``."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.OTHER


_HINTS = {
    ErrorCode.RATE_LIMITED: "the wallet is rate limiting this connection; retry in a few seconds",
    ErrorCode.INSUFFICIENT_BALANCE: "not enough funds",
    ErrorCode.QUOTA_EXCEEDED: "the connection's spending budget is used up",
    ErrorCode.UNAUTHORIZED: "the wallet does not know this connection key",
    ErrorCode.UNSUPPORTED_ENCRYPTION: "the wallet does not support the requested encryption",
}


class WalletError(UserError):
    """A wallet operation that failed; ``code`` is an :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode | str, message: str = "") -> None:
        self.code = ErrorCode.parse(code) if not isinstance(code, ErrorCode) else code
        self.message = message or _HINTS.get(self.code, self.code.value.lower().replace("_", " "))
        super().__init__(f"wallet: {self.code.value}: {self.message}")


@dataclass(frozen=True)
class Invoice:
    """An invoice (``type="incoming"``) or a payment (``"outgoing"``) as a wallet reports it."""

    bolt11: str
    payment_hash: str
    amount_msat: int
    type: str = "incoming"
    state: str = "pending"  # pending | accepted (a locked hold) | settled | expired | failed
    description: str | None = None
    description_hash: str | None = None
    preimage: str | None = None
    fees_paid_msat: int = 0
    created_at: int = 0
    expires_at: int | None = None
    settled_at: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: a hold invoice's settle deadline: a block height (NIP-47) and, if the wallet says,
    #: the unix time (``settle_deadline_at``, an oa-node ledger extension)
    settle_deadline: int | None = None
    settle_deadline_at: int | None = None

    @property
    def settled(self) -> bool:
        return self.state == "settled"

    @property
    def accepted(self) -> bool:
        """A hold invoice whose amount the payer has locked (not yet settled)."""
        return self.state == "accepted"


def preimage_matches(preimage: object, payment_hash: str) -> bool:
    """True when ``preimage`` is hex whose SHA-256 is ``payment_hash``: the only proof of
    payment a wallet's answer carries (anything else it says is taken on trust)."""
    try:
        return hashlib.sha256(bytes.fromhex(str(preimage))).hexdigest() == payment_hash
    except ValueError:
        return False


@dataclass(frozen=True)
class Payment:
    """The proof a paid invoice gives back: the preimage hashes to the payment hash."""

    payment_hash: str
    preimage: str
    amount_msat: int
    fees_paid_msat: int = 0


@runtime_checkable
class Wallet(Protocol):
    """An async Lightning wallet (amounts in millisatoshis)."""

    async def make_invoice(
        self,
        amount_msat: int,
        description: str | None = None,
        description_hash: str | None = None,
        expiry: int = 3600,
    ) -> Invoice:
        """Create an invoice; give a ``description`` or a hex ``description_hash``."""
        ...

    async def pay_invoice(self, bolt11: str, max_fee_msat: int | None = None, *,
                          first_attempt: bool = False) -> Payment:
        """Pay ``bolt11`` once; paying it again answers the recorded payment.

        ``first_attempt``: the caller's own durable record shows it never asked to pay this
        invoice before, so a wallet may skip looking for an earlier payment (a round trip
        to the wallet) before paying."""
        ...

    async def lookup_invoice(self, payment_hash: str) -> Invoice:
        """The current state of an invoice or payment (``NOT_FOUND`` if unknown)."""
        ...

    async def get_balance(self) -> int:
        """The spendable balance in msat."""
        ...

    async def wait_settled(self, payment_hash: str, timeout: float) -> Invoice:
        """Return once the invoice is settled; ``TIMEOUT`` after ``timeout`` seconds."""
        ...

    async def supports_holds(self) -> bool:
        """Whether the wallet offers the three hold-invoice methods."""
        ...

    async def make_hold_invoice(
        self,
        amount_msat: int,
        payment_hash: str,
        description: str | None = None,
        description_hash: str | None = None,
        expiry: int = 3600,
    ) -> Invoice:
        """A hold invoice for ``payment_hash`` (the preimage stays with the caller's peer)."""
        ...

    async def settle_hold_invoice(self, preimage: str) -> None:
        """Claim a locked hold invoice (idempotent)."""
        ...

    async def cancel_hold_invoice(self, payment_hash: str) -> None:
        """Give up a hold invoice; a locked amount returns to the payer (idempotent)."""
        ...

    async def wait_accepted(self, payment_hash: str, timeout: float) -> Invoice:
        """Return once a hold invoice is locked (or settled); ``TIMEOUT`` otherwise,
        ``PAYMENT_FAILED`` if it was cancelled or expired."""
        ...


@dataclass(frozen=True)
class ZapResult:
    """What a zap did: the signed request, the invoice paid, and the receipt if one came."""

    zap_request: Event
    bolt11: str
    payment: Payment
    receipt: Event | None = None


@runtime_checkable
class Zapper(Protocol):
    """Send NIP-57 zaps through the node's wallet (``node.capability(Zapper)``)."""

    async def zap(
        self,
        target: str,
        amount_msat: int,
        comment: str = "",
        relays: list[str] | None = None,
        receipt_timeout: float = 10.0,
    ) -> ZapResult:
        """Zap ``target`` (npub, nprofile, note, nevent, naddr or a hex pubkey).

        Resolves the recipient's lud16 from its kind-0 profile, fetches an invoice from its
        LNURL callback, checks that the invoice commits to the zap request and its amount,
        pays it, then waits up to ``receipt_timeout`` for a receipt that passes
        :func:`oa_node.nostr.nip57.validate_receipt`. Raises :class:`WalletError` or
        :class:`ZapError`.
        """
        ...


class ZapError(UserError):
    """A zap that cannot be made: no lud16, no nostr support, a bad LNURL answer..."""


def wallet_for(node: Node, account: str, key: str) -> Any | None:
    """The wallet a role uses: the node's default :class:`Wallet`, or the one named
    ``account`` when the role's config names an account. ``None`` when the node has no
    default wallet; a named account the node does not provide is a config error naming
    ``key`` (so it is found at start, not at payment time)."""
    from oa_node.config import ConfigError

    wallet = node.capability(Wallet, account)
    if wallet is None and account:
        raise ConfigError(node.config.path, key, f"no wallet account {account!r} on this "
                          "node (add it to [wallet.accounts])")
    return wallet
