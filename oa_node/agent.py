"""What the NIP-SA agent plugin offers other plugins, as capabilities keyed by Protocol.

``node.capability(AgentState)`` loads and updates the agent's encrypted state (39201,
compare-and-set on ``state_version``); ``node.capability(AgentRunner)`` is the live tick
runner of a node whose ``[nipsa]`` is enabled (set once its service started), for
embedding and tests. Both are plain Protocols: the plugin implements them, nothing here
imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from oa_node.nostr.event import Event


@dataclass(frozen=True)
class StateSnapshot:
    """Decrypted state: ``version`` 0 and ``{}`` when the agent has none yet."""

    version: int
    data: dict[str, Any]
    event: Event | None = None


@runtime_checkable
class AgentState(Protocol):
    """The agent's private state, NIP-44 encrypted to itself (kind 39201)."""

    @property
    def last(self) -> StateSnapshot | None:
        """The snapshot this store last loaded or wrote."""
        ...

    async def load(self) -> StateSnapshot:
        """The newest state on any relay, decrypted."""
        ...

    async def update(self, data: dict[str, Any], *, base_version: int | None = None
                     ) -> StateSnapshot:
        """Write ``data`` as ``base_version + 1``; refused when relays hold a newer one."""
        ...

    async def modify(self, fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[
            str, Any]], *, attempts: int = 3) -> StateSnapshot:
        """Load, apply ``fn`` to a copy, write; on a concurrent write, reload and retry."""
        ...


@runtime_checkable
class AgentRunner(Protocol):
    """The running agent: its recent ticks, and a way to run one now."""

    @property
    def history(self) -> Sequence[Any]:
        """The latest ticks, oldest first (each with ``tick_id``, ``trigger``, ``status``)."""
        ...

    async def tick(self, trigger: str = "manual", trigger_event: Event | None = None) -> Any:
        """Run one tick now: publish its request, run every handler, publish its result."""
        ...
