"""Reconcile two relays with NIP-77 (negentropy), then copy what each one lacks.

The local side's (created_at, id) pairs under the filter come straight from its store
(``EventStore.id_pairs``: one indexed scan, no event JSON) when the caller has it, else
from the local relay by paged REQs. The remote is only asked for the differences: NIP-77
finds them, a REQ by ids (in batches) fetches what we need and EVENTs publish what it
lacks, both through the local relay, so its policies and live subscribers see the copies.

Both relays are reached with the node's client (:class:`RelayConnection`), so a relay that
answers ``auth-required:`` (to NEG-OPEN, REQ or EVENT) gets the node's NIP-42 AUTH and
one retry. Bytes exchanged with the remote are counted, split into the reconciliation
itself and the events copied. Every frame from either relay is hostile: events are checked
(id, signature, asked for) before they are passed on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.client.connection import RelayConnection
from oa_node.client.errors import ClientError
from oa_node.client.reconcile import MAX_DIFFERENCES
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.filter import Filter
from oa_node.nostr.negentropy import Storage

if TYPE_CHECKING:
    from oa_node.nostr.event import Event
    from oa_node.signer import Signer
    from oa_node.store import EventStore

#: Ids per REQ when fetching, events per page when reading the local relay.
ID_BATCH = 500
PAGE = 1000
#: Local events one sync covers at most (memory: about 100 bytes a pair).
MAX_LOCAL = MAX_DIFFERENCES

DIRECTIONS = ("down", "up", "both")


@dataclass
class SyncResult:
    """What a sync found and did; ``*_bytes`` are websocket text bytes with the remote."""

    local_count: int = 0
    have: int = 0  # ids the remote lacks
    need: int = 0  # ids we lack
    rounds: int = 0
    neg_bytes: int = 0
    fetched: int = 0
    stored_locally: int = 0
    published: int = 0
    refused: list[str] = field(default_factory=list)
    transfer_bytes: int = 0
    local_source: str = ""  # "store" or "relay"
    seconds: dict[str, float] = field(default_factory=dict)  # read_local, reconcile, copy

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["refused"] = self.refused[:20]
        d["refused_count"] = len(self.refused)
        return d


def _bytes(conn: RelayConnection) -> int:
    return conn.stats.bytes_sent + conn.stats.bytes_received


async def _stored(conn: RelayConnection, filt: Filter, timeout: float, cap: int) -> list[Event]:
    """The stored events ``filt`` matches on ``conn`` (checked by the connection: id,
    signature, filter), until EOSE; ClientError when refused or silent."""
    got: list[Event] = []
    async with conn.subscribe([filt], yield_eose=True, max_queue=cap) as sub:
        eose = False
        with anyio.move_on_after(timeout):
            async for item in sub:
                if not isinstance(item, tuple):
                    eose = True
                    break
                got.append(item[1])
        reason = sub.closed_reasons.get(conn.url)
    if reason is not None:
        hint = (" (no key to authenticate with)"
                if conn.signer is None and reason.startswith("auth-required:") else "")
        raise ClientError(f"{conn.url} refused the REQ: {reason[:200]}{hint}")
    if not eose:
        raise ClientError(f"{conn.url}: no EOSE within {timeout:g}s")
    return got


async def read_relay_pairs(conn: RelayConnection, filt: Filter, timeout: float,
                           max_items: int = MAX_LOCAL) -> dict[str, int]:
    """id -> created_at of every event ``conn`` serves under ``filt``, paged by ``until``
    (what a sync without the local store has to read)."""
    out: dict[str, int] = {}
    until = filt.until
    while until is None or until >= 0:
        page = dataclasses.replace(filt, limit=PAGE, until=until)
        events = await _stored(conn, page, timeout, PAGE * 2)
        fresh = 0
        for ev in events:
            if ev.id not in out:
                out[ev.id] = ev.created_at
                fresh += 1
        if len(out) > max_items:
            raise ClientError(f"more than {max_items} local events: narrow the filter")
        if not events:
            break
        oldest = min(ev.created_at for ev in events)
        if not fresh and all(ev.created_at == oldest for ev in events):
            await _whole_second(conn, filt, oldest, out, timeout)
        # The oldest second may go on in the next page, so ask from it again (repeats are
        # skipped); a page with nothing new moves past it.
        until = oldest if fresh else oldest - 1
    return out


async def _whole_second(conn: RelayConnection, filt: Filter, second: int,
                        seen: dict[str, int], timeout: float) -> None:
    """A page held only events of one second, all seen: the relay has no more of it, or
    more than it returns per page, which REQ cannot page through (``until`` is the only
    cursor). NIP-45 COUNT tells; a relay without it is taken at its word."""
    one = dataclasses.replace(filt, since=second, until=second, limit=None)
    try:
        there = await conn.count([one], timeout)
    except ClientError:
        return
    have = sum(1 for ts in seen.values() if ts == second)
    if there > have:
        raise ClientError(f"{conn.url} holds {there} events at created_at {second}, more than "
                          f"it returns per REQ ({have}): they cannot be read by paging; sync "
                          "from the node's own store (no --local)")


async def _fetch(conn: RelayConnection, ids: list[str], timeout: float) -> list[Event]:
    """The wanted events, by id in batches (anything not asked for is dropped). A relay
    that returns fewer than asked (its max limit) is asked again for the rest, as long as
    each answer brings some; what it never sends is left out."""
    out: list[Event] = []
    pending = list(dict.fromkeys(ids))
    while pending:
        batch, rest = pending[:ID_BATCH], pending[ID_BATCH:]
        events = await _stored(conn, Filter(ids=set(batch), limit=len(batch)), timeout,
                               len(batch))
        got = {ev.id for ev in events}
        out += events
        missing = [x for x in batch if x not in got]
        pending = (missing + rest) if got and missing else rest
    return out


async def _publish(conn: RelayConnection, events: list[Event], res: SyncResult,
                   timeout: float) -> int:
    """EVENTs pipelined by batch; counts the OK trues, keeps the refusals."""
    ok = 0
    for i in range(0, len(events), ID_BATCH):
        batch = events[i : i + ID_BATCH]
        answers = await asyncio.gather(*(conn.publish(ev, timeout) for ev in batch))
        for ev, (accepted, message) in zip(batch, answers, strict=True):
            if accepted:
                ok += 1
            else:
                res.refused.append(f"{ev.id}: {message[:120]}")
    return ok


def _connection(url: str, signer: Signer | None, timeout: float, *, verify: bool = True
                ) -> RelayConnection:
    """No reconnect (a sync is one pass) and NIP-42 only when a relay asks for it."""
    return RelayConnection(url, signer, auto_auth=False, reconnect=False, verify=verify,
                           connect_timeout=timeout, auth_timeout=timeout,
                           max_message_size=2**24, max_queue=PAGE * 2)


async def sync(local_url: str, remote_url: str, filt: dict[str, Any], direction: str,
               timeout: float = 30.0, *, signer: Signer | None = None,
               local_store: EventStore | None = None, max_local: int = MAX_LOCAL
               ) -> SyncResult:
    """Reconcile ``local_url`` with ``remote_url`` under ``filt`` and copy per ``direction``.

    ``local_store`` is the local relay's own store (opened): its pairs are read directly.
    ``signer`` answers either relay's NIP-42 challenge when it requires auth. More than
    ``max_local`` local events under ``filt`` is refused (memory stays bounded)."""
    if direction not in DIRECTIONS:
        raise ClientError(f"direction must be one of {', '.join(DIRECTIONS)}")
    if "limit" in filt:
        raise ClientError("a sync filter cannot have a limit (it would differ per relay)")
    try:
        parsed = Filter.from_dict(filt)
    except ProtocolError as exc:
        raise ClientError(f"bad filter: {exc.reason}") from None
    res = SyncResult()
    # The local relay's pages only give (created_at, id): a signature check of every local
    # event would double the read; what is published from it is checked below.
    local = _connection(local_url, signer, timeout, verify=False)
    remote = _connection(remote_url, signer, timeout)
    try:
        await local.connect()
        await remote.connect()
        t0 = time.perf_counter()
        if local_store is not None:
            res.local_source = "store"
            pairs = await local_store.id_pairs(parsed, max_local + 1)
            if len(pairs) > max_local:
                raise ClientError(f"more than {max_local} local events: narrow the filter")
            storage = Storage([(ts, bytes.fromhex(eid)) for ts, eid in pairs])
        else:
            res.local_source = "relay"
            records = await read_relay_pairs(local, parsed, timeout, max_local)
            storage = Storage([(ts, bytes.fromhex(eid)) for eid, ts in records.items()])
        res.local_count = len(storage)
        t1 = time.perf_counter()
        before = _bytes(remote)
        done = await remote.reconcile(parsed, storage, timeout=timeout)
        res.neg_bytes = _bytes(remote) - before
        res.have, res.need, res.rounds = len(done.have), len(done.need), done.rounds
        t2 = time.perf_counter()
        start = _bytes(remote)
        if direction in ("down", "both") and done.need:
            got = await _fetch(remote, [x.hex() for x in done.need], timeout)
            res.fetched = len(got)
            res.stored_locally = await _publish(local, got, res, timeout)
        if direction in ("up", "both") and done.have:
            ups = [ev for ev in await _fetch(local, [x.hex() for x in done.have], timeout)
                   if ev.verify()]
            res.published = await _publish(remote, ups, res, timeout)
        res.transfer_bytes = _bytes(remote) - start
        res.seconds = {"read_local": round(t1 - t0, 3), "reconcile": round(t2 - t1, 3),
                       "copy": round(time.perf_counter() - t2, 3)}
    finally:
        await remote.close()
        await local.close()
    return res
