"""The agent's private state (kind 39201): JSON, NIP-44 encrypted to the agent itself.

Relays keep only the newest 39201 by ``created_at``, which is not enough when two runners
(or a restarted one) write concurrently. So every write carries ``state_version`` = the
version it was based on + 1, readers take the highest version they find on any relay, and
:meth:`AgentStateStore.update` refuses a write whose base is not the newest version the
relays hold (compare-and-set). Only the agent's key can decrypt the content.

The check and the write are two relay round trips, so two writers racing within that
window can both write ``N + 1``; readers then agree on one of them (newest ``created_at``,
then lowest id), and :meth:`AgentStateStore.modify` is the way to read-modify-write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.agent import StateSnapshot
from oa_node.errors import UserError
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.kinds import AGENT_STATE
from oa_node.nostr.nipsa.common import STATE_D, content_json
from oa_node.nostr.nipsa.state import choose_state, state_template

if TYPE_CHECKING:
    from oa_node.client import RelayPool
    from oa_node.signer import Signer

class StateError(UserError):
    """State that cannot be read (undecryptable, not JSON) or written (no relay took it)."""


class StaleStateError(StateError):
    """A write based on an older ``state_version`` than the relays hold."""

    def __init__(self, base: int, current: int) -> None:
        self.base = base
        self.current = current
        super().__init__(f"stale state write refused: based on state_version {base}, "
                         f"relays hold {current} (load, merge and retry)")


class AgentStateStore:
    """Load, decrypt and update the agent's state; ``node.capability(AgentState)``
    (:class:`oa_node.agent.AgentState`)."""

    def __init__(self, pool: Callable[[], RelayPool], signer: Callable[[], Signer],
                 publish_timeout: float = 10.0, query_timeout: float = 10.0) -> None:
        self._pool_src = pool
        self._signer_src = signer
        self.publish_timeout = publish_timeout
        self.query_timeout = query_timeout
        self._lock = anyio.Lock()
        self._last: StateSnapshot | None = None

    @classmethod
    def fixed(cls, pool: RelayPool, signer: Signer, **kw: float) -> AgentStateStore:
        return cls(lambda: pool, lambda: signer, **kw)

    @property
    def last(self) -> StateSnapshot | None:
        """The snapshot this store last loaded or wrote."""
        return self._last

    async def _newest(self) -> tuple[int, Event | None, str | None]:
        signer = self._signer_src()
        events = await self._pool_src().query(
            {"kinds": [AGENT_STATE], "authors": [signer.public_key], "#d": [STATE_D]},
            self.query_timeout)
        env = choose_state(events, signer.public_key)
        if env is None:
            return 0, None, None
        return env.version, env.event, env.ciphertext

    async def load(self) -> StateSnapshot:
        """The newest state on any relay, decrypted."""
        version, event, ciphertext = await self._newest()
        if event is None or ciphertext is None:
            snap = StateSnapshot(0, {}, None)
        else:
            snap = StateSnapshot(version, await self.decrypt(ciphertext), event)
        self._last = snap
        return snap

    async def decrypt(self, ciphertext: str) -> dict[str, Any]:
        signer = self._signer_src()
        try:
            text = await signer.nip44_decrypt(signer.public_key, ciphertext)
        except ProtocolError as exc:
            raise StateError(f"agent state: cannot decrypt: {exc.reason}") from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # nested deeper than Python recurses
            raise StateError(f"agent state: not JSON after decryption: {exc}") from None
        if not isinstance(data, dict):
            raise StateError("agent state: must be a JSON object")
        return data

    async def update(self, data: dict[str, Any], *, base_version: int | None = None
                     ) -> StateSnapshot:
        """Write ``data`` as version ``base_version + 1`` (default base: the version this
        store last loaded or wrote, 0 if none). Raises :class:`StaleStateError` when relays
        already hold a newer version than the base."""
        if not isinstance(data, dict):
            raise StateError("agent state must be a JSON object")
        async with self._lock:
            base = base_version if base_version is not None else (
                self._last.version if self._last else 0)
            current, current_event, _ = await self._newest()
            if current != base:
                raise StaleStateError(base, current)
            signer = self._signer_src()
            text = content_json(data)
            ciphertext = await signer.nip44_encrypt(signer.public_key, text)
            created = int(time.time())
            if current_event is not None:
                created = max(created, current_event.created_at + 1)  # must replace it
            event = await signer.sign(state_template(ciphertext, base + 1, created))
            result = await self._pool_src().publish(event, self.publish_timeout)
            if not result.ok_count:
                raise StateError("agent state: no relay accepted the update ("
                                 + "; ".join(f"{u}: {m}" for u, (_, m) in result.results.items())
                                 + ")")
            self._last = StateSnapshot(base + 1, dict(data), event)
            return self._last

    async def modify(self, fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[
            str, Any]], *, attempts: int = 3) -> StateSnapshot:
        """Load, apply ``fn`` to a copy, write; on a concurrent write, reload and retry
        (at most ``attempts`` times)."""
        for attempt in range(attempts):
            snap = await self.load()
            new = fn(json.loads(json.dumps(snap.data)))
            if hasattr(new, "__await__"):
                new = await new  # type: ignore[misc]
            try:
                return await self.update(new, base_version=snap.version)  # type: ignore[arg-type]
            except StaleStateError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
