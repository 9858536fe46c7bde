"""``[provider]``: what the provider ("Pylon") serves, at what price, and how much at once.

Sandbox limits are not repeated here: they come from ``[sandbox]`` (the provider's caps on
every request), read through :func:`executor_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oa_node.config import Config, Key, Section, non_negative, positive
from oa_node.executors.jobtype import ExecutorSettings
from oa_node.wallet import wallet_for

if TYPE_CHECKING:
    from oa_node.node import Node

DEFAULT_SCHEMAS = ["oa.sandbox_run.v1", "oa.repo_index.v1"]


def _prices(value: dict[str, Any]) -> None:
    for schema, price in value.items():
        if not isinstance(price, int) or isinstance(price, bool) or price < 0:
            raise ValueError(f"a table of schema = price in msat (integer >= 0); {schema!r} "
                             f"has {price!r}")


def provider_section() -> Section:
    return Section(
        "provider",
        help="The compute provider (\"Pylon\"): serves NIP-90 jobs in the sandbox for a price.",
        keys=[
            Key("enabled", bool, False, "Take jobs from the node's relays."),
            Key("schemas", list, DEFAULT_SCHEMAS, "Job schemas served (registered job types).",
                item=str),
            Key("price_msat", int, 1000, "Price of one job in msat, unless `prices` says "
                "otherwise.", check=non_negative),
            Key("prices", dict, {}, "Per-schema prices in msat, e.g. "
                '{ "oa.sandbox_run.v1" = 5000 }.', check=_prices),
            Key("concurrency", int, 1, "Jobs run at the same time.", check=positive),
            Key("queue_bound", int, 8, "Accepted jobs waiting for a slot; more are answered "
                '"busy".', check=non_negative),
            Key("dedicated_kinds", bool, True, "Also serve the dedicated kinds (5930, 5931)."),
            Key("identifier", str, "oa-node-provider", "The `d` tag of the NIP-89 "
                "announcement."),
            Key("about", str, "", "Free text for the announcement."),
            Key("announce_interval_secs", float, 600.0, "Seconds between re-announcements.",
                check=positive),
            Key("announce_ttl_secs", int, 1800, "NIP-40 expiration of each announcement.",
                check=positive),
            Key("lookback_secs", int, 600, "On start, also take requests this old (jobs sent "
                "while the provider was down).", check=non_negative),
            Key("invoice_expiry_secs", int, 3600, "Expiry of the invoice attached to a "
                "result; unpaid by then means unpaid.", check=positive),
            Key("settle_poll_secs", float, 2.0, "Seconds between checks of unpaid invoices.",
                check=positive),
            Key("publish_retry_secs", float, 120.0, "How long to keep re-sending a result "
                "no relay accepted.", check=positive),
            Key("record_trajectories", bool, True, "Record each job as a NIP-SA trajectory "
                "(never an encrypted job: it would be public) "
                "when the node can (adds trajectory tags to results)."),
            Key("wallet_account", str, "", "Wallet that invoices and receives payments: "
                '"" is the default [wallet], a name is that [wallet.accounts] entry.'),
        ],
    )


@dataclass(frozen=True)
class ProviderSettings:
    enabled: bool = False
    schemas: tuple[str, ...] = tuple(DEFAULT_SCHEMAS)
    price_msat: int = 1000
    prices: dict[str, int] = field(default_factory=dict)
    concurrency: int = 1
    queue_bound: int = 8
    dedicated_kinds: bool = True
    identifier: str = "oa-node-provider"
    about: str = ""
    announce_interval_secs: float = 600.0
    announce_ttl_secs: int = 1800
    lookback_secs: int = 600
    invoice_expiry_secs: int = 3600
    settle_poll_secs: float = 2.0
    publish_retry_secs: float = 120.0
    record_trajectories: bool = True
    wallet_account: str = ""

    @classmethod
    def from_section(cls, table: dict[str, Any]) -> ProviderSettings:
        values = dict(table)
        values["schemas"] = tuple(values.get("schemas") or ())
        values["prices"] = dict(values.get("prices") or {})
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})

    def price(self, schema: str) -> int:
        return self.prices.get(schema, self.price_msat)

    def wallet(self, node: Node) -> Any | None:
        """The wallet this provider uses, ``None`` when the node has none; a named account
        the node does not provide is a config error (found at start, not at payment)."""
        return wallet_for(node, self.wallet_account, "provider.wallet_account")


def executor_settings(config: Config, data_dir: Path) -> ExecutorSettings:
    """The provider's policy from ``[sandbox]`` (its caps, schemes, networks, workdir)."""
    return ExecutorSettings.from_section(config.get("sandbox"), data_dir)
