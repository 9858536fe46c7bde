"""Backend-neutral pieces of event storage: what gets indexed and how a filter becomes SQL.

Both SQL backends share one schema shape (``events`` + ``tags`` + deletion records) and
one filter translation, so the same filter gives the same rows on SQLite and PostgreSQL.
Only single-letter tags are indexed, as NIP-01 filters only address those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oa_node.nostr import nip09
from oa_node.nostr.kinds import is_addressable, is_replaceable
from oa_node.store import DUPLICATE, SaveResult, StoreError

if TYPE_CHECKING:
    from oa_node.nostr import Event, Filter

#: Hard cap on values per filter field that reach SQL (policies reject far less).
MAX_SQL_VALUES = 5000
#: Largest integer SQL takes (INTEGER / BIGINT): a bigger since, until or limit is
#: clamped to it, which keeps its meaning (created_at is 32-bit) instead of failing.
SQL_INT_MAX = 2**63 - 1

log = logging.getLogger("oa_node.relay.storage")

#: writes a batch in one transaction; an item may be a StoreError when that event alone
#: could not be written (the others were)
WriteBatch = Callable[
    [list[tuple["Event", str]]], Awaitable["list[SaveResult] | list[SaveResult | StoreError]"]
]


@dataclass(frozen=True, slots=True)
class Indexed:
    """The columns derived from an event, computed once before the write transaction."""

    d_tag: str | None  # "" for replaceable kinds, the d value for addressable, None otherwise
    expiration: int | None
    tags: list[tuple[str, str]]  # (letter, value), deduplicated


def index_event(event: Event) -> Indexed:
    kind = event.kind
    if is_addressable(kind):
        d_tag: str | None = event.d_tag
    elif is_replaceable(kind):
        d_tag = ""
    else:
        d_tag = None
    seen: set[tuple[str, str]] = set()
    tags: list[tuple[str, str]] = []
    for t in event.tags:
        if len(t) > 1 and len(t[0]) == 1:
            pair = (t[0], t[1])
            if pair not in seen:
                seen.add(pair)
                tags.append(pair)
    return Indexed(d_tag, event.expiration, tags)


def deletion_targets(event: Event) -> tuple[list[str], list[tuple[int, str, str]]]:
    """NIP-09 targets of a kind-5 event (core rules): event ids from ``e`` tags, and
    (kind, pubkey, d) from ``a`` tags naming the author's own replaceable events."""
    ids, coords = nip09.deletion_targets(event)
    addresses: list[tuple[int, str, str]] = []
    for coord in sorted(coords):
        parsed = nip09.parse_address(coord)
        if parsed is not None:
            addresses.append(parsed)
    return sorted(ids), addresses


class Params:
    """Collects SQL parameters and renders placeholders in the backend's style."""

    def __init__(self, style: str) -> None:
        self.values: list[Any] = []
        self.style = style

    def add(self, value: Any) -> str:
        self.values.append(value)
        return "?" if self.style == "qmark" else f"${len(self.values)}"

    def many(self, values: Iterable[Any]) -> str:
        return ",".join(self.add(v) for v in values)


def _vals(values: Iterable[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    out = sorted(set(values))
    if len(out) > MAX_SQL_VALUES:
        raise ValueError(f"too many values in one filter field (max {MAX_SQL_VALUES})")
    return out


def filter_where(f: Filter, now: int, p: Params, *, join_tag: bool = True) -> str | None:
    """SQL WHERE clause for one filter over ``events e``; None when it can match nothing.

    The driving index is chosen explicitly (ids, then authors, then a tag, then kinds,
    then time) by writing ``+col`` on the other columns, which keeps SQLite's planner from
    picking a worse index (SQLite only: PostgreSQL plans from statistics and has no unary
    plus on text).
    """
    plus = "+" if p.style == "qmark" else ""
    ids, authors, kinds = _vals(f.ids), _vals(f.authors), _vals(f.kinds)
    tag_items = sorted((k, _vals(v) or []) for k, v in (f.tags or {}).items())
    if any(v == [] for v in (ids, authors, kinds)) or any(not v for _, v in tag_items):
        return None
    drive = "ids" if ids else "authors" if authors else "tags" if tag_items else (
        "kinds" if kinds else "time")
    clauses: list[str] = []
    if ids:
        clauses.append(f"e.id IN ({p.many(ids)})")
    if authors:
        col = "e.pubkey" if drive == "authors" else plus + "e.pubkey"
        clauses.append(f"{col} IN ({p.many(authors)})")
    if kinds:
        col = "e.kind" if drive == "kinds" else plus + "e.kind"
        clauses.append(f"{col} IN ({p.many(kinds)})")
    for i, (letter, values) in enumerate(tag_items):
        if drive == "tags" and i == 0 and len(values) == 1 and join_tag:
            # joined in query_sql: walks tags(name, value, created_at) newest first
            clauses.append(f"t0.name = {p.add(letter)} AND t0.value = {p.add(values[0])}")
        elif drive == "tags" and i == 0:
            clauses.append(
                f"e.seq IN (SELECT t.seq FROM tags t WHERE t.name = {p.add(letter)}"
                f" AND t.value IN ({p.many(values)}))"
            )
        else:
            clauses.append(
                f"EXISTS (SELECT 1 FROM tags t WHERE t.seq = e.seq AND t.name = {p.add(letter)}"
                f" AND t.value IN ({p.many(values)}))"
            )
    tcol = "e.created_at" if drive == "time" else plus + "e.created_at"
    if f.since is not None:
        clauses.append(f"{tcol} >= {p.add(min(int(f.since), SQL_INT_MAX))}")
    if f.until is not None:
        clauses.append(f"{tcol} <= {p.add(min(int(f.until), SQL_INT_MAX))}")
    clauses.append(f"(e.expiration IS NULL OR e.expiration > {p.add(now)})")
    return " AND ".join(clauses)


def query_sql(f: Filter, now: int, style: str) -> tuple[str, list[Any]] | None:
    """``SELECT id, raw`` for one filter, newest first, lowest id first on ties."""
    if f.limit is not None and f.limit <= 0:
        return None
    p = Params(style)
    where = filter_where(f, now, p)
    if where is None:
        return None
    if "t0.name" in where:  # one tag value drives: read its index in time order, no sort
        sql = (
            f"SELECT e.id, e.raw FROM tags t0 JOIN events e ON e.seq = t0.seq WHERE {where}"
            " ORDER BY t0.created_at DESC, e.id"
        )
    else:
        sql = f"SELECT e.id, e.raw FROM events e WHERE {where} ORDER BY e.created_at DESC, e.id"
    if f.limit is not None:
        sql += f" LIMIT {p.add(min(int(f.limit), SQL_INT_MAX))}"
    return sql, p.values


def id_pairs_sql(f: Filter, now: int, style: str, max_items: int | None,
                 exclude_kinds: Collection[int] = ()) -> tuple[str, list[Any]] | None:
    """``SELECT created_at, id`` for one filter (no event JSON): with a ``limit`` (or
    ``max_items``) the newest first, as :func:`query_sql` picks them; unordered otherwise
    (the caller sorts), so a whole-store scan needs no sort in SQL."""
    limit = f.limit
    if max_items is not None:
        limit = max_items if limit is None else min(limit, max_items)
    if limit is not None and limit <= 0:
        return None
    p = Params(style)
    where = filter_where(f, now, p)
    if where is None:
        return None
    if exclude_kinds:
        col = "+e.kind" if style == "qmark" else "e.kind"  # never drives the scan
        where += f" AND {col} NOT IN ({p.many(sorted(exclude_kinds))})"
    if "t0.name" in where:
        sql = ("SELECT e.created_at, e.id FROM tags t0 JOIN events e ON e.seq = t0.seq"
               f" WHERE {where}")
        order = " ORDER BY t0.created_at DESC, e.id"
    else:
        sql = f"SELECT e.created_at, e.id FROM events e WHERE {where}"
        order = " ORDER BY e.created_at DESC, e.id"
    if f.limit is not None:  # which events a limit keeps depends on the order
        sql += order
    if limit is not None:
        sql += f" LIMIT {p.add(int(limit))}"
    return sql, p.values


def count_sql(filters: Iterable[Filter], now: int, style: str) -> tuple[str, list[Any]] | None:
    """``SELECT COUNT(*)`` over the union of the filters (limits ignored, per NIP-45)."""
    p = Params(style)
    parts: list[str] = []
    for f in filters:
        where = filter_where(f, now, p, join_tag=False)
        if where is not None:
            parts.append(f"SELECT e.seq FROM events e WHERE {where}")
    if not parts:
        return None
    return f"SELECT COUNT(*) FROM ({' UNION '.join(parts)}) AS u", p.values


def merge_rows(rows_per_filter: Iterable[Iterable[tuple[str, str]]]) -> list[str]:
    """Concatenate per-filter results, dropping an event already sent for an earlier filter."""
    seen: set[str] = set()
    out: list[str] = []
    add = seen.add
    for rows in rows_per_filter:
        for eid, raw in rows:
            if eid not in seen:
                add(eid)
                out.append(raw)
    return out


Now = Callable[[], int]


class BatchWriter:
    """Group commit for a store: saves queue up and one task writes them, up to
    ``max_batch`` at a time, in one transaction (``write_batch``); each caller's future
    resolves after that commit, so ``OK true`` implies durable. A save of an id already
    queued waits for the first and answers duplicate."""

    def __init__(self, write_batch: WriteBatch, max_batch: int, name: str) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._name = name
        self._queue: asyncio.Queue[tuple[Event, str, asyncio.Future[SaveResult]] | None]
        self._queue = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[SaveResult]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    def is_pending(self, event_id: str) -> bool:
        """True while ``event_id`` is queued or being committed."""
        return event_id in self._pending

    async def save(self, event: Event, raw: str) -> SaveResult:
        pending = self._pending.get(event.id)
        if pending is not None:
            await asyncio.shield(pending)
            return DUPLICATE
        fut: asyncio.Future[SaveResult] = asyncio.get_running_loop().create_future()
        self._pending[event.id] = fut
        self._queue.put_nowait((event, raw, fut))
        return await asyncio.shield(fut)

    async def flush(self) -> None:
        """Wait until every save queued so far is committed (or failed)."""
        pending = list(self._pending.values())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def stop(self) -> None:
        """Commit everything queued before this call, then end the writer task."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        queue = self._queue
        stop = False
        while not stop:
            item = await queue.get()
            batch = []
            if item is None:
                stop = True
            else:
                batch.append(item)
            while len(batch) < self._max_batch and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    stop = True
                    continue
                batch.append(nxt)
            if not batch:
                continue
            try:
                results = await asyncio.shield(self._write_batch([(e, r) for e, r, _ in batch]))
            except Exception as exc:  # the whole transaction rolled back
                log.warning("%s: write failed: %s", self._name, exc)
                err = StoreError(f"write failed: {exc}")
                for ev, _, fut in batch:
                    self._pending.pop(ev.id, None)
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (ev, _, fut), res in zip(batch, results, strict=True):
                self._pending.pop(ev.id, None)
                if fut.done():
                    continue
                if isinstance(res, StoreError):  # this event alone failed
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
