"""What the node's embedded relay tells other plugins about its traffic (the dashboard).

Offered by the ``relay`` plugin while it serves (``node.provide(RelayStats, ...)``); absent
when the node runs no relay. Read-only: counters since the relay started.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class RelayStats(Protocol):
    async def relay_stats(self) -> dict[str, int]:
        """``connections`` open now, ``events_stored`` in the store, and since start
        ``events_ingested`` (new events saved) and ``events_delivered`` (sent to live
        subscriptions: the fan-out)."""
        ...
