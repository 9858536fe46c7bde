"""The agent runtime of a node: publish its profile, schedule and goals, run its ticks.

Also the small read helpers the CLI uses to show any agent's public NIP-SA events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.agent import AgentRunner
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import AGENT_GOALS, AGENT_PROFILE, AGENT_SCHEDULE
from oa_node.nostr.nipsa import GOALS_D, PROFILE_D, SCHEDULE_D, Goal, goals_template
from oa_node.plugins.nipsa.settings import NipsaSettings
from oa_node.plugins.nipsa.state import AgentStateStore, StateError
from oa_node.plugins.nipsa.ticks import TickRunner, collect_tick_handlers

if TYPE_CHECKING:
    from oa_node.client import RelayPool
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.nipsa")
REPUBLISH_MAX_DELAY = 60.0


async def publish(pool: RelayPool, signer: Signer, template: EventTemplate,
                  timeout: float = 10.0) -> Event:
    """Sign and publish; raise :class:`StateError` (a UserError) when no relay took it."""
    event = await signer.sign(template)
    result = await pool.publish(event, timeout)
    if not result.ok_count:
        reasons = "; ".join(f"{u}: {m}" for u, (_, m) in result.results.items()) or "no relays"
        raise StateError(f"kind {event.kind}: no relay accepted the event ({reasons})")
    return event


async def fetch_latest(pool: RelayPool, kind: int, author: str, d: str,
                       timeout: float = 10.0) -> Event | None:
    """The newest valid ``kind``/``d`` event by ``author`` on any relay."""
    events = await pool.query({"kinds": [kind], "authors": [author], "#d": [d]}, timeout)
    valid = [e for e in events if e.pubkey == author and e.d_tag == d]
    return max(valid, key=lambda e: (e.created_at, e.id), default=None)


D_TAGS = {AGENT_PROFILE: PROFILE_D, AGENT_SCHEDULE: SCHEDULE_D, AGENT_GOALS: GOALS_D}


async def publish_goals(pool: RelayPool, signer: Signer, goals: Sequence[Goal],
                        timeout: float = 10.0) -> Event:
    return await publish(pool, signer, goals_template(goals), timeout)


def goals_from_json(obj: Any) -> list[Goal]:
    items = obj.get("goals") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise StateError('goals: expected a JSON list of goals or {"goals": [...]}')
    now = int(time.time())
    try:
        goals = [Goal.from_dict(g) for g in items]
    except ProtocolError as exc:
        raise StateError(exc.reason) from None
    for g in goals:
        g.created_at = g.created_at or now
    return goals


async def run_agent(node: Any, settings: NipsaSettings, state: AgentStateStore) -> None:
    """The ``nipsa`` service: announce the agent, then tick until cancelled."""
    pool, signer = node.pool, node.signer
    now = int(time.time())
    profile = settings.profile(node.config["node"]["name"])
    if profile.threshold is None:  # a threshold signer may describe its group itself
        group = getattr(signer, "threshold", None)
        members = getattr(signer, "signer_pubkeys", None)
        if isinstance(group, tuple) and len(group) == 2:
            profile.threshold = (int(group[0]), int(group[1]))
            profile.signers = list(members or [])
    schedule = settings.schedule(now)
    pending: list[EventTemplate] = []
    for template in (profile.to_template(), schedule.to_template()):
        try:
            await publish(pool, signer, template, settings.publish_timeout)
        except StateError as exc:  # relays may come up later (a node's own relay); ticks run
            log.warning("%s; retrying until a relay accepts it", exc)
            pending.append(template)
        except Exception as exc:  # the signer is unavailable for now (a threshold signer's
            # peers offline or restarting): the node keeps serving and retries with backoff.
            # A broken config already failed above, building the signer.
            log.warning("kind %d: cannot sign yet (%s); retrying with backoff",
                        template.kind, exc)
            pending.append(template)
    handlers = collect_tick_handlers(node)
    log.info("agent %s: heartbeat %s, triggers %s, tick handlers %s", signer.public_key[:12],
             f"{settings.heartbeat}s" if settings.heartbeat else "off",
             ", ".join(settings.triggers) or "none", ", ".join(handlers) or "none")
    runner = TickRunner(
        node, state, handlers, heartbeat=schedule.heartbeat, triggers=schedule.triggers,
        handler_timeout=settings.handler_timeout, publish_timeout=settings.publish_timeout,
        tick_ttl=settings.tick_ttl)
    node.provide(AgentRunner, runner)  # for embedding and tests: the live runner
    async with anyio.create_task_group() as tg:
        if pending:
            tg.start_soon(republish, pool, signer, pending, settings.publish_timeout)
        await runner.run()


async def republish(pool: RelayPool, signer: Signer, templates: list[EventTemplate],
                    timeout: float = 10.0) -> None:
    """Publish ``templates`` (freshly signed each try) until a relay accepts each one,
    backing off from 1 s to 60 s: without its schedule, readers cannot tell a provider's
    ticks from silence (``oa-node providers`` liveness)."""
    delay = 1.0
    while templates:
        await anyio.sleep(delay)
        delay = min(delay * 2, REPUBLISH_MAX_DELAY)
        for template in list(templates):
            try:
                event = await publish(pool, signer, template, timeout)
            except Exception as exc:  # relay or signer trouble: the next round tries again
                log.debug("kind %d not published yet: %s", template.kind, exc)
                continue
            templates.remove(template)
            log.info("kind %d published after a retry", event.kind)
