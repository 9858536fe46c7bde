"""``[buyer]``: defaults for submitted jobs and how results are verified and paid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oa_node.config import Key, Section, non_negative, positive
from oa_node.wallet import wallet_for

if TYPE_CHECKING:
    from oa_node.node import Node


def _rate(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError("a fraction between 0 and 1")


def buyer_section() -> Section:
    return Section(
        "buyer",
        help="The job buyer: submits NIP-90 jobs, verifies results, pays only verified ones.",
        keys=[
            Key("enabled", bool, False, "Run the buyer service in `oa-node start` (finishes "
                "submitted jobs: collects, verifies, pays; also after a restart)."),
            Key("max_price_msat", int, 10000, "Default bid: the most a job may cost (msat).",
                check=non_negative),
            Key("max_fee_msat", int, 1000, "Routing fee allowed per payment (msat).",
                check=non_negative),
            Key("redundancy", int, 1, "Default number of providers that must agree.",
                check=positive),
            Key("job_ttl_secs", int, 600, "NIP-40 expiration of a request: no provider may "
                "start it later.", check=positive),
            Key("result_grace_secs", int, 300, "After expiration, how long to wait for "
                "results of jobs that started in time.", check=non_negative),
            Key("dedicated_kinds", bool, False, "Publish the dedicated kind (5930/5931) "
                "instead of 5050."),
            Key("audit_rate", float, 0.0, "Fraction of verified results re-run on this "
                "node's own sandbox and compared.", check=_rate),
            Key("audit_on_disagreement", bool, True, "When redundant providers disagree, "
                "re-run the job here to decide who is right (needs a sandbox)."),
            Key("publish_verdicts", bool, True, "Publish each verdict as a NIP-32 label."),
            Key("pay_retry_secs", float, 10.0, "Seconds between retries of a failed payment.",
                check=positive),
            Key("wallet_account", str, "", 'Wallet that pays verified results: "" is the '
                "default [wallet], a name is that [wallet.accounts] entry."),
        ],
    )


@dataclass(frozen=True)
class BuyerSettings:
    enabled: bool = False
    max_price_msat: int = 10000
    max_fee_msat: int = 1000
    redundancy: int = 1
    job_ttl_secs: int = 600
    result_grace_secs: int = 300
    dedicated_kinds: bool = False
    audit_rate: float = 0.0
    audit_on_disagreement: bool = True
    publish_verdicts: bool = True
    pay_retry_secs: float = 10.0
    wallet_account: str = ""

    @classmethod
    def from_section(cls, table: dict[str, Any]) -> BuyerSettings:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in dict(table).items() if k in known})

    def wallet(self, node: Node) -> Any | None:
        """The wallet the buyer pays with, ``None`` when the node has none; a named account
        the node does not provide is a config error (found at start, not at payment)."""
        return wallet_for(node, self.wallet_account, "buyer.wallet_account")
