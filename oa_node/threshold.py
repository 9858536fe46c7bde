"""What a FROSTR share holder tells other plugins about its group (the dashboard).

Offered by the ``frostr`` plugin while its holder runs (``node.provide(FrostGroup, ...)``);
absent otherwise. Read-only: asking pings the peers, it never signs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class FrostGroup(Protocol):
    async def frost_status(self, window: float = 3.0) -> dict[str, Any]:
        """``group_public_key`` (hex), ``threshold``, ``members``, this holder's ``idx``,
        and ``peers``: one ``{"idx", "share_key", "online", "rtt_ms", "error"}`` per other
        holder, pinged for at most ``window`` seconds."""
        ...
