"""A read-only view of a wallet service's accounts this node runs itself (the dashboard).

Offered by ``ledger_wallet`` while it serves (``node.provide(WalletLedger, ...)``): its
connections with balances and budgets, and their history. Never a secret: no URI, no key.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class WalletLedger(Protocol):
    def connection_views(self) -> list[dict[str, Any]]:
        """One ``{"name", "balance_msat", "budget_msat", "budget_period", "created_at",
        "revoked"}`` per connection."""
        ...

    def history_view(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest moves of connection ``name``: ``{"delta_msat", "reason", "ref",
        "created_at"}``."""
        ...
