"""``[buyer]``: defaults for submitted jobs and how results are verified and paid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oa_node.config import Section, non_negative, positive
from oa_node.settings import Settings, setting
from oa_node.wallet import wallet_for

if TYPE_CHECKING:
    from oa_node.node import Node


def _rate(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError("a fraction between 0 and 1")


@dataclass(frozen=True)
class BuyerSettings(
    Settings, section="buyer",
    help="The job buyer: submits NIP-90 jobs, verifies results, pays only verified ones.",
):
    enabled: bool = setting(False, "Run the buyer service in `oa-node start` (finishes "
                            "submitted jobs: collects, verifies, pays; also after a restart).")
    max_price_msat: int = setting(10000, "Default bid: the most a job may cost (msat).",
                                  check=non_negative)
    max_fee_msat: int = setting(1000, "Routing fee budgeted per payment (msat): an invoice "
                                "whose amount plus this exceeds the bid is refused. NIP-47 "
                                "cannot cap the fee a wallet pays; the fee paid is recorded.",
                                check=non_negative)
    redundancy: int = setting(1, "Default number of providers that must agree.", check=positive)
    job_ttl_secs: int = setting(600, "NIP-40 expiration of a request: no provider may start "
                                "it later.", check=positive)
    result_grace_secs: int = setting(300, "After expiration, how long to wait for results of "
                                     "jobs that started in time.", check=non_negative)
    dedicated_kinds: bool = setting(False, "Publish the dedicated kind (5930/5931) instead of "
                                    "5050.")
    audit_rate: float = setting(0.1, "Fraction of passing jobs re-run on this node's own "
                                "sandbox and compared (level 'audited'); an audit that cannot "
                                "run here is recorded as unavailable and the verdict keeps "
                                "its lower level.", check=_rate)
    audit_on_disagreement: bool = setting(True, "When redundant providers disagree, re-run the "
                                          "job here to decide who is right (needs a sandbox).")
    count_unknown_providers: bool = setting(
        False, "At redundancy K > 1, count every provider key towards the K that must "
        "agree; by default only the providers a job names and those with a verified pass "
        "beyond structural here count (one actor can hold many keys).")
    route_open_jobs: bool = setting(
        True, "A job submitted without --provider is addressed (NIP-90 p tags) to the K "
        "providers with the best record here, then the lowest price, among live "
        "announcements of its schema within the bid; never one caught cheating. No such K: "
        "the job is open to any provider.")
    encrypt_results: bool = setting(True, "Ask providers to NIP-44 encrypt results to this "
                                    "buyer (others cannot copy them); false: in clear.")
    escrow: str = setting(
        "auto", "Escrow for jobs addressed to providers (named or routed): a hold invoice for "
        "a hash only this buyer can release, funds locked before work, released after "
        "verification. auto: offered when this buyer's wallet advertises hold invoices "
        "(NIP-47 info) and a buyer follows the job to fund it (the buyer service, or "
        "--wait); on: offered whenever the wallet supports holds (run the buyer to fund); "
        "off: never. Otherwise, and with a provider whose wallet lacks holds: plain "
        "pay-after-verify.", choices=("auto", "on", "off"))
    trust_labels_from: tuple[str, ...] = setting(
        (), "Hex public keys whose NIP-32 verdict labels join this buyer's provider record "
        "(imported when the buyer starts; its own verdicts win).")
    publish_verdicts: bool = setting(True, "Publish each verdict as a NIP-32 label.")
    pay_retry_secs: float = setting(10.0, "Seconds between retries of a failed payment.",
                                    check=positive)
    wallet_account: str = setting("", 'Wallet that pays verified results: "" is the default '
                                  "[wallet], a name is that [wallet.accounts] entry.")

    def wallet(self, node: Node) -> Any | None:
        """The wallet the buyer pays with, ``None`` when the node has none; a named account
        the node does not provide is a config error (found at start, not at payment)."""
        return wallet_for(node, self.wallet_account, "buyer.wallet_account")


def buyer_section() -> Section:
    return BuyerSettings.section()
