"""``[provider]``: what the provider ("Pylon") serves, at what price, and how much at once.

Sandbox limits are not repeated here: they are the sandbox plugin's (the provider's caps on
every request), offered as ``node.capability(Execution)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oa_node.config import Section, non_negative, positive
from oa_node.settings import Settings, setting
from oa_node.wallet import wallet_for

if TYPE_CHECKING:
    from oa_node.node import Node

DEFAULT_SCHEMAS = ["oa.sandbox_run.v1", "oa.repo_index.v1"]


def _prices(value: dict[str, Any]) -> None:
    for schema, price in value.items():
        if not isinstance(price, int) or isinstance(price, bool) or price < 0:
            raise ValueError(f"a table of schema = price in msat (integer >= 0); {schema!r} "
                             f"has {price!r}")


@dataclass(frozen=True)
class ProviderSettings(
    Settings, section="provider",
    help="The compute provider (\"Pylon\"): serves NIP-90 jobs in the sandbox for a price.",
):
    enabled: bool = setting(False, "Take jobs from the node's relays.")
    schemas: tuple[str, ...] = setting(tuple(DEFAULT_SCHEMAS), "Job schemas served "
                                       "(registered job types).")
    price_msat: int = setting(1000, "Price of one job in msat, unless `prices` says otherwise.",
                              check=non_negative)
    prices: dict[str, int] = setting({}, "Per-schema prices in msat, e.g. "
                                     '{ "oa.sandbox_run.v1" = 5000 }.', check=_prices)
    concurrency: int = setting(1, "Jobs run at the same time.", check=positive)
    queue_bound: int = setting(8, 'Accepted jobs waiting for a slot; more are answered "busy".',
                               check=non_negative)
    dedicated_kinds: bool = setting(True, "Also serve the dedicated kinds (5930, 5931).")
    identifier: str = setting("oa-node-provider", "The `d` tag of the NIP-89 announcement.")
    about: str = setting("", "Free text for the announcement.")
    announce_interval_secs: float = setting(600.0, "Seconds between re-announcements.",
                                            check=positive)
    announce_ttl_secs: int = setting(1800, "NIP-40 expiration of each announcement.",
                                     check=positive)
    lookback_secs: int = setting(600, "On start, also take requests this old (jobs sent while "
                                 "the provider was down).", check=non_negative)
    invoice_expiry_secs: int = setting(3600, "Expiry of the invoice attached to a result; "
                                       "unpaid by then means unpaid.", check=positive)
    require_funding: bool = setting(True, "When a request offers escrow (a payment hash for a "
                                    "hold invoice), run it only once the buyer's payment is "
                                    "locked; false: run at once and invoice plainly.")
    settle_poll_secs: float = setting(2.0, "Seconds between checks of unpaid invoices.",
                                      check=positive)
    publish_retry_secs: float = setting(120.0, "How long to keep re-sending a result no relay "
                                        "accepted.", check=positive)
    record_trajectories: bool = setting(True, "Record each job as a NIP-SA trajectory (never "
                                        "an encrypted job: it would be public) when the node "
                                        "can (adds trajectory tags to results).")
    wallet_account: str = setting("", "Wallet that invoices and receives payments: "
                                  '"" is the default [wallet], a name is that '
                                  "[wallet.accounts] entry.")

    def price(self, schema: str) -> int:
        return self.prices.get(schema, self.price_msat)

    def wallet(self, node: Node) -> Any | None:
        """The wallet this provider uses, ``None`` when the node has none; a named account
        the node does not provide is a config error (found at start, not at payment)."""
        return wallet_for(node, self.wallet_account, "provider.wallet_account")


def provider_section() -> Section:
    return ProviderSettings.section()
