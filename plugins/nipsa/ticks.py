"""The tick runner: wake the agent on its heartbeat and its triggers, publish the tick
request (39210), let every registered tick handler act, publish the result (39211).

Handlers come from the ``register_tick_handlers`` hook: ``register(name, async_fn)`` with
``async_fn(node, tick) -> TickOutcome | dict | None``. ``tick`` is a :class:`Tick`: its id,
trigger, the triggering event (if any), the 39210 request event and the agent's encrypted
state store (``await tick.state.load()`` / ``update``). A handler that raises or exceeds
``handler_timeout`` makes the tick ``failure``/``timeout`` but never stops the runner.
Ticks run one at a time; triggers that arrive meanwhile wait in a small bounded queue
(extra ones are dropped and counted, the next tick still sees the agent's world).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectSendStream

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.kinds import ENCRYPTED_DM, GIFT_WRAP, TEXT_NOTE, ZAP_RECEIPT
from oa_node.nostr.nipsa.common import content_json
from oa_node.nostr.nipsa.schedule import Trigger
from oa_node.nostr.nipsa.ticks import TickOutcome, TickRequest, TickResult

if TYPE_CHECKING:
    from oa_node.node import Node
    from oa_node.plugins.nipsa.state import AgentStateStore

log = logging.getLogger("oa_node.nipsa")

TickHandler = Callable[[Any, "Tick"], Awaitable[Any]]
PRIVATE_DM = 14  # NIP-17 chat message (inside a gift wrap)
DM_KINDS = (ENCRYPTED_DM, PRIVATE_DM, GIFT_WRAP)
_STATUS_RANK = {"success": 0, "failure": 1, "timeout": 2}
QUEUE_SIZE = 16
RESUBSCRIBE_DELAY = 5.0


@dataclass
class Tick:
    """What a tick handler is handed."""

    tick_id: str
    trigger: str
    trigger_event: Event | None
    request: Event
    started_at: float
    state: AgentStateStore


@dataclass
class TickRecord:
    """One finished tick, as published."""

    tick_id: str
    trigger: str
    request: Event
    result: Event
    outcome: TickOutcome
    duration_ms: int
    errors: dict[str, str] = field(default_factory=dict)


def collect_tick_handlers(node: Node) -> dict[str, TickHandler]:
    """Every handler plugins registered, by name (a name registered twice is an error)."""
    found: dict[str, TickHandler] = {}

    def register(name: str, fn: TickHandler) -> None:
        if name in found:
            raise ValueError(f"tick handler {name!r} registered twice")
        found[name] = fn

    node.plugins.hook.register_tick_handlers(register=register)
    return found


def trigger_filters(pubkey: str, triggers: list[Trigger], since: int) -> list[dict[str, Any]]:
    """Relay filters for the events that should wake the agent."""
    filters: list[dict[str, Any]] = []
    kinds_to_me: list[int] = []
    for t in triggers:
        if t.type == "mention":
            kinds_to_me.append(TEXT_NOTE)
        elif t.type == "dm":
            kinds_to_me += DM_KINDS
        elif t.type == "zap":
            kinds_to_me.append(ZAP_RECEIPT)
    if kinds_to_me:
        filters.append({"kinds": sorted(set(kinds_to_me)), "#p": [pubkey], "since": since})
    any_kind = sorted({t.kind for t in triggers if t.type == "kind" and t.kind is not None})
    if any_kind:
        filters.append({"kinds": any_kind, "since": since})
    return filters


def advance_since(since: int, created_at: int, now: int) -> int:
    """The ``since`` of the next trigger subscription after seeing an event stamped
    ``created_at``: never past ``now``, so an event dated in the future (anyone can send
    one that mentions the agent) cannot hide the real ones after a resubscription."""
    return max(since, min(created_at, now))


def classify(event: Event, pubkey: str, triggers: list[Trigger]) -> str | None:
    """Which configured trigger ``event`` fires (None: none, e.g. the agent's own event)."""
    if event.pubkey == pubkey:
        return None
    addressed = pubkey in event.tag_values("p")
    types = {t.type for t in triggers}
    if addressed and event.kind == TEXT_NOTE and "mention" in types:
        return "mention"
    if addressed and event.kind in DM_KINDS and "dm" in types:
        return "dm"
    if addressed and event.kind == ZAP_RECEIPT and "zap" in types:
        return "zap"
    if any(t.type == "kind" and t.kind == event.kind for t in triggers):
        return "kind"
    return None


class TickRunner:
    def __init__(
        self, node: Any, state: AgentStateStore, handlers: Mapping[str, TickHandler], *,
        heartbeat: int | None, triggers: list[Trigger], handler_timeout: float = 60.0,
        publish_timeout: float = 10.0, tick_ttl: int = 0,
    ) -> None:
        self.node = node
        self.state = state
        self.handlers = dict(handlers)
        self.heartbeat = heartbeat
        self.triggers = triggers
        self.handler_timeout = handler_timeout
        self.publish_timeout = publish_timeout
        self.tick_ttl = tick_ttl
        self.history: list[TickRecord] = []
        self.dropped_triggers = 0
        self._max_history = 100

    # --- one tick ---------------------------------------------------------------------

    async def tick(self, trigger: str = "manual", trigger_event: Event | None = None
                   ) -> TickRecord:
        """Run one tick now: publish 39210, run every handler, publish 39211."""
        signer, pool = self.node.signer, self.node.pool
        tick_id = secrets.token_hex(16)
        started = time.monotonic()
        expiration = int(time.time()) + self.tick_ttl if self.tick_ttl else None
        req_template = TickRequest(
            tick_id, trigger, signer.public_key, trigger_event.id if trigger_event else None,
        ).to_template(expiration=expiration)
        request = await signer.sign(req_template)
        res = await pool.publish(request, self.publish_timeout)
        if not res.ok_count:
            log.warning("tick %s: no relay accepted the request", tick_id)
        tick = Tick(tick_id, trigger, trigger_event, request, time.time(), self.state)

        status_rank = 0
        actions: list[dict[str, Any]] = []
        cost = 0
        summaries: dict[str, Any] = {}
        errors: dict[str, str] = {}
        trajectory: tuple[str, str, str] | None = None
        for name, fn in self.handlers.items():
            outcome: TickOutcome | None = None
            try:
                with anyio.fail_after(self.handler_timeout):
                    outcome = TickOutcome.coerce(await fn(self.node, tick))
            except TimeoutError:
                errors[name] = f"timed out after {self.handler_timeout:g}s"
                status_rank = max(status_rank, _STATUS_RANK["timeout"])
            except ProtocolError as exc:
                errors[name] = f"bad outcome: {exc.reason}"
                status_rank = max(status_rank, _STATUS_RANK["failure"])
            except Exception as exc:  # a handler bug must not stop the agent
                log.exception("tick handler %s failed", name)
                errors[name] = f"{type(exc).__name__}: {exc}"
                status_rank = max(status_rank, _STATUS_RANK["failure"])
            if outcome is None:
                continue
            status_rank = max(status_rank, _STATUS_RANK[outcome.status])
            actions += outcome.actions
            cost += outcome.cost_msat
            if outcome.summary is not None:
                summaries[name] = outcome.summary
            trajectory = outcome.trajectory or trajectory

        status = next(s for s, r in _STATUS_RANK.items() if r == status_rank)
        final = TickOutcome(status, actions, cost, summaries or None, trajectory)
        duration_ms = max(1, math.ceil((time.monotonic() - started) * 1000))
        body = {"trigger": trigger, "handlers": sorted(self.handlers), "actions": actions,
                "summary": summaries, "errors": errors}
        encrypted = await signer.nip44_encrypt(signer.public_key, content_json(body))
        result_template = TickResult(
            tick_id, request.id, signer.public_key, status, len(actions), cost, duration_ms,
            trajectory,
        ).to_template(encrypted, created_at=max(int(time.time()), request.created_at),
                      expiration=expiration)
        result = await signer.sign(result_template)
        res = await pool.publish(result, self.publish_timeout)
        if not res.ok_count:
            log.warning("tick %s: no relay accepted the result", tick_id)
        record = TickRecord(tick_id, trigger, request, result, final, duration_ms, errors)
        self.history.append(record)
        del self.history[:-self._max_history]
        log.info("tick %s (%s): %s, %d action(s), %d ms", tick_id[:8], trigger, status,
                 len(actions), duration_ms)
        return record

    # --- the service ------------------------------------------------------------------

    async def run(self) -> None:
        """Tick on the heartbeat and on triggers until cancelled."""
        send, receive = anyio.create_memory_object_stream[tuple[str, Event | None]](QUEUE_SIZE)
        async with anyio.create_task_group() as tg, send, receive:
            if self.heartbeat:
                tg.start_soon(self._heartbeat, send.clone())
            if self.triggers:
                tg.start_soon(self._watch_triggers, send.clone())
            async for trigger, event in receive:
                try:
                    await self.tick(trigger, event)
                except Exception:  # relay or signer trouble: log, keep the agent alive
                    log.exception("tick (%s) failed", trigger)

    def _offer(self, send: ObjectSendStream[tuple[str, Event | None]], trigger: str,
               event: Event | None) -> None:
        try:
            send.send_nowait((trigger, event))
        except anyio.WouldBlock:
            self.dropped_triggers += 1
            log.warning("tick queue full; dropped a %s trigger", trigger)

    async def _heartbeat(self, send: ObjectSendStream[tuple[str, Event | None]]) -> None:
        assert self.heartbeat
        async with send:
            while True:  # the first beat at start makes a (re)started agent visibly alive
                self._offer(send, "heartbeat", None)
                await anyio.sleep(self.heartbeat)

    async def _watch_triggers(self, send: ObjectSendStream[tuple[str, Event | None]]) -> None:
        pubkey = self.node.signer.public_key
        since = int(time.time())
        async with send:
            while True:
                filters = trigger_filters(pubkey, self.triggers, since)
                async with self.node.pool.subscribe(filters) as sub:
                    async for _relay, event in sub:
                        since = advance_since(since, event.created_at, int(time.time()))
                        trigger = classify(event, pubkey, self.triggers)
                        if trigger is not None:
                            self._offer(send, trigger, event)
                # every relay closed the subscription: try again shortly
                log.warning("trigger subscription ended (%s); resubscribing",
                            "; ".join(f"{u}: {m}" for u, m in sub.closed_reasons.items())
                            or "no relays")
                await anyio.sleep(RESUBSCRIBE_DELAY)
