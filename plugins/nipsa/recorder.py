"""The recorder behind ``node.capability(Trajectories)``: sign and publish each trajectory
event as it happens, in order, and close the session with its hash.

Event ``seq`` is assigned and the chain (``e`` reply to the previous id) is built under one
lock, so concurrent callers still get a gap-free, correctly chained session. An event that
no relay accepted stays queued and is re-sent, in order, before the next one; ``end()``
refuses to hand out a reference to a session that relays do not hold in full.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.nipsa.common import SESSION_END
from oa_node.nostr.nipsa.trajectory import (
    TrajectoryReport,
    TrajectorySession,
    trajectory_event_template,
    trajectory_hash,
)
from oa_node.trajectory import TrajectoryError, TrajectoryRef, read_trajectory

if TYPE_CHECKING:
    from oa_node.client import RelayPool
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.nipsa")


def new_session_id() -> str:
    return secrets.token_hex(16)


class Recorder:
    """One session being recorded (implements :class:`oa_node.trajectory.TrajectoryRecorder`)."""

    def __init__(self, pool: RelayPool, signer: Signer, session: TrajectorySession,
                 start_event: Event, relay: str, publish_timeout: float) -> None:
        self._pool = pool
        self._signer = signer
        self._session = session
        self._start_event = start_event
        self._relay = relay
        self._timeout = publish_timeout
        self._lock = anyio.Lock()
        self._ids: list[str] = []
        self._pending: list[Event] = []
        self._ref: TrajectoryRef | None = None
        self._ending = False  # session_end is recorded (maybe not yet published)

    @property
    def session_id(self) -> str:
        return self._session.session_id

    @property
    def root(self) -> str:
        return self._start_event.id

    @property
    def count(self) -> int:
        return len(self._ids)

    @property
    def closed(self) -> bool:
        return self._ref is not None

    @property
    def pending(self) -> int:
        """Events signed but not yet accepted by any relay."""
        return len(self._pending)

    async def record(self, type: str, payload: Mapping[str, Any] | None = None) -> str:
        if type == SESSION_END:
            raise TrajectoryError("record session_end through end()")
        async with self._lock:
            return await self._append(type, payload)

    async def end(self, payload: Mapping[str, Any] | None = None) -> TrajectoryRef:
        async with self._lock:
            if self._ref is not None:
                return self._ref
            if not self._ending:
                await self._append(SESSION_END, payload)
                self._ending = True
            else:  # a retry: only re-send what relays have not taken yet
                await self._flush()
            if self._pending:
                raise TrajectoryError(
                    f"trajectory {self.session_id}: {len(self._pending)} event(s) reached no "
                    "relay; the session cannot be referenced yet (call end() again to retry)")
            digest = trajectory_hash(self._ids)
            s = self._session
            s.ended_at = int(time.time())
            s.total_events = len(self._ids)
            s.trajectory_hash = digest
            s.root = self._start_event.id
            # must replace the opening 39230, which needs a strictly newer created_at
            created = max(s.ended_at, self._start_event.created_at + 1)
            closing = await self._signer.sign(s.to_template(created_at=created))
            result = await self._pool.publish(closing, self._timeout)
            if not result.ok_count:
                raise TrajectoryError(
                    f"trajectory {self.session_id}: no relay accepted the closing session "
                    f"event ({_reasons(result.results)})")
            self._ref = TrajectoryRef(self.session_id, self._relay, digest,
                                      self._signer.public_key)
            return self._ref

    async def _append(self, type: str, payload: Mapping[str, Any] | None) -> str:
        if self._ref is not None or self._ending:
            raise TrajectoryError(f"trajectory {self.session_id} is closed")
        seq = len(self._ids)
        try:
            template = trajectory_event_template(
                pubkey=self._signer.public_key, session_id=self.session_id,
                root=self._start_event.id, seq=seq,
                previous=self._ids[-1] if self._ids else None, type=type, payload=payload)
        except ProtocolError as exc:
            raise TrajectoryError(f"trajectory {self.session_id}: {exc.reason}") from None
        event = await self._signer.sign(template)
        self._ids.append(event.id)
        self._pending.append(event)
        await self._flush()
        return event.id

    async def _flush(self) -> None:
        while self._pending:
            event = self._pending[0]
            result = await self._pool.publish(event, self._timeout)
            if not result.ok_count:
                log.warning("trajectory %s seq %s: no relay accepted it (%s); will retry",
                            self.session_id, event.first_tag_value("seq"),
                            _reasons(result.results))
                return
            self._pending.pop(0)


def _reasons(results: Mapping[str, tuple[bool, str]]) -> str:
    return "; ".join(f"{url}: {msg}" for url, (_, msg) in results.items()) or "no relays"


class NodeTrajectories:
    """``node.capability(Trajectories)`` (implements :class:`oa_node.trajectory.Trajectories`).

    Takes callables for the pool and signer so building it never opens connections or reads
    the key file (``lambda: node.pool``); they are resolved on first use."""

    def __init__(self, pool: Callable[[], RelayPool], signer: Callable[[], Signer],
                 publish_timeout: float = 10.0) -> None:
        self._pool_src = pool
        self._signer_src = signer
        self.publish_timeout = publish_timeout

    @classmethod
    def fixed(cls, pool: RelayPool, signer: Signer, publish_timeout: float = 10.0
              ) -> NodeTrajectories:
        """Over a given pool and signer (tests, embedding)."""
        return cls(lambda: pool, lambda: signer, publish_timeout)

    @property
    def pool(self) -> RelayPool:
        return self._pool_src()

    @property
    def signer(self) -> Signer:
        return self._signer_src()

    async def start(
        self, *, participants: Iterable[str] = (), repo: str | None = None,
        sha: str | None = None, model: str | None = None, tick: str | None = None,
        session_id: str | None = None,
    ) -> Recorder:
        signer, pool = self.signer, self.pool
        now = int(time.time())
        session = TrajectorySession(
            session_id=session_id or new_session_id(), started_at=now,
            participants=list(participants), repo=repo, sha=sha, model=model, tick=tick)
        try:
            template: EventTemplate = session.to_template(created_at=now)
        except ProtocolError as exc:
            raise TrajectoryError(f"trajectory: {exc.reason}") from None
        event = await signer.sign(template)
        result = await pool.publish(event, self.publish_timeout)
        if not result.ok_count:
            raise TrajectoryError(f"trajectory {session.session_id}: no relay accepted the "
                                  f"session event ({_reasons(result.results)})")
        return Recorder(pool, signer, session, event, result.accepted_by[0],
                        self.publish_timeout)

    async def read(self, session_id: str, author: str | None = None, *,
                   expected_hash: str | None = None, timeout: float = 10.0) -> TrajectoryReport:
        return await read_trajectory(self.pool, session_id, author,
                                     expected_hash=expected_hash, timeout=timeout)
