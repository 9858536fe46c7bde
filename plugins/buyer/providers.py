"""Who is selling compute right now: NIP-89 announcements plus NIP-SA liveness.

An announcement (31990) lives for its NIP-40 TTL, so a provider that crashed keeps
looking available until it expires. A provider that runs the NIP-SA agent (``[nipsa]
enabled``) also publishes a schedule (39202, ``heartbeat`` H seconds, ``active``) and a
tick (39210 request, 39211 result) every H seconds; those ticks are its pulse. The rule:

- schedule ``active`` with a heartbeat H: the provider is *stale* when its last sign of
  life (the newest tick, or the schedule itself when newer, which covers a provider that
  has just started) is more than ``stale_factor`` x H seconds old;
- no schedule, an inactive one, or one without heartbeat: judged by its announcement only.

The first half is pure (events in, rows out); :func:`gather_providers` is the I/O edge.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from oa_node.nostr import kinds, nip19, nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.nip40 import is_expired
from oa_node.nostr.nipsa import SCHEDULE_D, AgentSchedule, TickRequest, TickResult
from oa_node.plugins.buyer import DEFAULT_STALE_FACTOR

#: Filters per REQ: below the common relay limits (oa-node's relay allows 16).
FILTERS_PER_QUERY = 10
#: REQs in flight at once per relay (oa-node's relay allows 64 subscriptions).
PARALLEL_QUERIES = 8
#: Newest tick events asked of a relay per provider: a request and its result.
TICKS_PER_PROVIDER = 2


def list_providers(events: Iterable[Event], now: int | None = None) -> list[dict[str, Any]]:
    """The newest unexpired, valid announcement per (provider, d), newest first."""
    out = []
    for info in nip90.newest_handlers(events, now):
        out.append({"pubkey": info.provider, "npub": nip19.npub_encode(info.provider),
                    "name": info.name, "identifier": info.identifier, "kinds": info.kinds,
                    "schemas": info.schemas, "pricing_msat": info.pricing_msat,
                    "limits": info.limits, "relays": info.relays,
                    "last_seen": info.event.created_at, "event_id": info.event.id})
    return out


# --- liveness (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Liveness:
    """What a provider's NIP-SA events say about it."""

    schedule: AgentSchedule | None = None
    schedule_at: int | None = None
    last_tick: int | None = None

    @property
    def heartbeat(self) -> int | None:
        """The heartbeat the provider promised, or None when it promised none."""
        s = self.schedule
        return s.heartbeat if s is not None and s.active and s.heartbeat else None

    def last_alive(self) -> int | None:
        """Its last sign of life: the newest tick, or the schedule when newer."""
        stamps = [t for t in (self.last_tick, self.schedule_at) if t is not None]
        return max(stamps) if stamps else None

    def is_stale(self, now: int, stale_factor: float = DEFAULT_STALE_FACTOR) -> bool:
        """True when it promised a heartbeat and has been silent for stale_factor beats."""
        hb = self.heartbeat
        if hb is None:
            return False
        alive = self.last_alive()
        return alive is None or now - alive > stale_factor * hb


def liveness_queries(pubkeys: Sequence[str]) -> list[list[dict[str, Any]]]:
    """REQ filter lists asking for the schedules and the newest ticks of ``pubkeys``.

    A provider's schedule and ticks are asked for in the same REQ, so a relay that answers
    only some REQs in time never leaves a schedule without its ticks (which would look
    stale). One tick filter per provider: ``limit`` counts across a filter's authors."""
    per_req = FILTERS_PER_QUERY - 1
    out = []
    for i in range(0, len(pubkeys), per_req):
        batch = list(pubkeys[i:i + per_req])
        filters: list[dict[str, Any]] = [
            {"kinds": [kinds.AGENT_SCHEDULE], "authors": batch, "#d": [SCHEDULE_D]}]
        filters += [{"kinds": [kinds.TICK_REQUEST, kinds.TICK_RESULT], "authors": [pk],
                     "limit": TICKS_PER_PROVIDER} for pk in batch]
        out.append(filters)
    return out


def liveness_from_events(events: Iterable[Event], pubkeys: Iterable[str],
                         now: int | None = None) -> dict[str, Liveness]:
    """Each provider's newest valid schedule and newest valid tick among ``events``.

    Events by anyone else, with a bad signature, expired (NIP-40) or malformed are ignored,
    so a relay cannot vouch for a provider with events the provider did not sign."""
    wanted = set(pubkeys)
    schedules: dict[str, tuple[int, AgentSchedule]] = {}
    ticks: dict[str, int] = {}
    for ev in events:
        if ev.pubkey not in wanted or is_expired(ev, now) or not ev.verify():
            continue
        try:
            if ev.kind == kinds.AGENT_SCHEDULE:
                if ev.d_tag != SCHEDULE_D:
                    continue
                schedule = AgentSchedule.from_event(ev)
                if ev.pubkey not in schedules or schedules[ev.pubkey][0] < ev.created_at:
                    schedules[ev.pubkey] = (ev.created_at, schedule)
            elif ev.kind == kinds.TICK_REQUEST:
                TickRequest.from_event(ev)
                ticks[ev.pubkey] = max(ticks.get(ev.pubkey, 0), ev.created_at)
            elif ev.kind == kinds.TICK_RESULT:
                TickResult.from_event(ev)
                ticks[ev.pubkey] = max(ticks.get(ev.pubkey, 0), ev.created_at)
        except ProtocolError:
            continue
    out: dict[str, Liveness] = {}
    for pk in wanted:
        at, schedule = schedules.get(pk, (None, None))
        out[pk] = Liveness(schedule, at, ticks.get(pk))
    return out


def apply_liveness(ads: list[dict[str, Any]], liveness: dict[str, Liveness], now: int, *,
                   stale_factor: float = DEFAULT_STALE_FACTOR, include_stale: bool = False
                   ) -> list[dict[str, Any]]:
    """``ads`` with ``last_tick``, ``heartbeat`` and ``stale`` added; stale ones dropped
    unless ``include_stale``."""
    out = []
    for ad in ads:
        live = liveness.get(ad["pubkey"], Liveness())
        stale = live.is_stale(now, stale_factor)
        if stale and not include_stale:
            continue
        out.append(ad | {"last_tick": live.last_tick, "heartbeat": live.heartbeat,
                         "stale": stale})
    return out


# --- routing an open job (pure) --------------------------------------------------------


def choose_providers(ads: Iterable[dict[str, Any]], records: dict[str, dict[str, Any]],
                     schema: str, bid_msat: int, count: int) -> list[str]:
    """The ``count`` providers a job without ``--provider`` is addressed to: among live
    announcements serving ``schema`` at a price within the bid, never one caught cheating
    here, the best record here first (its score: passes minus fails, cheating weighs
    most), then the lowest price, then the newest announcement (the likeliest alive).
    Fewer than ``count`` candidates: ``[]`` (the job stays open to any provider)."""
    best: dict[str, tuple[tuple[int, int, int], str]] = {}
    for ad in ads:
        price = (ad.get("pricing_msat") or {}).get(schema)
        if ad.get("stale") or schema not in (ad.get("schemas") or ()) \
                or not isinstance(price, int) or price > bid_msat:
            continue
        rec = records.get(ad["pubkey"]) or {}
        if rec.get("cheated"):
            continue
        key = (-int(rec.get("score", 0)), price, -int(ad.get("last_seen", 0)))
        if ad["pubkey"] not in best or key < best[ad["pubkey"]][0]:
            best[ad["pubkey"]] = (key, ad["pubkey"])
    ranked = [pk for _, pk in sorted(best.values())]
    return ranked[:count] if len(ranked) >= count else []


# --- the I/O edge ----------------------------------------------------------------------


async def _query_all(pool: Any, queries: list[list[dict[str, Any]]], timeout: float
                     ) -> list[Event]:
    """Every filter list in ``queries`` as its own REQ, a few at a time, within ``timeout``."""
    events: list[Event] = []
    limiter = anyio.CapacityLimiter(PARALLEL_QUERIES)
    deadline = time.monotonic() + timeout

    async def one(batch: list[dict[str, Any]]) -> None:
        async with limiter:
            left = deadline - time.monotonic()
            if left > 0:
                events.extend(await pool.query(batch, left))

    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:
            for filters in queries:
                tg.start_soon(one, filters)
    return events


async def gather_providers(pool: Any, *, schema: str | None = None, timeout: float = 10.0,
                           stale_factor: float = DEFAULT_STALE_FACTOR,
                           include_stale: bool = False, now: int | None = None
                           ) -> list[dict[str, Any]]:
    """Announced providers (of ``schema``) from ``pool``'s relays with their liveness; both
    round trips share ``timeout``."""
    deadline = time.monotonic() + timeout
    filt: dict[str, Any] = {"kinds": [kinds.HANDLER_INFO], "#k": [str(kinds.JOB_REQUEST)]}
    if schema:
        filt["#t"] = [schema]
    ads = list_providers(await pool.query(filt, timeout))
    pubkeys = sorted({ad["pubkey"] for ad in ads})
    if not pubkeys:
        return []
    events = await _query_all(pool, liveness_queries(pubkeys),
                              max(0.5, deadline - time.monotonic()))
    now = int(time.time()) if now is None else now
    return apply_liveness(ads, liveness_from_events(events, pubkeys, now), now,
                          stale_factor=stale_factor, include_stale=include_stale)
