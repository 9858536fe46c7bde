"""NIP-77 on the relay: NEG-OPEN / NEG-MSG / NEG-CLOSE sessions, answered with NEG-MSG/NEG-ERR.

The server hands any frame its NIP-01 parser refused to :func:`dispatch`; NEG-* frames are
handled here, anything else is left to the server. A session snapshots the (created_at, id)
of the events its filter matches (the same auth and filter policies as a REQ apply) with the
store's ``id_pairs`` (one indexed scan, no event JSON), up to
``limits.negentropy_max_records`` (past it: ``NEG-ERR blocked: too many records``), and then
runs the sans-I/O :mod:`oa_node.nostr.negentropy` server side on each NEG-MSG. Memory is
bounded relay-wide: all open sessions together hold at most ``HELD_FACTOR`` times that
cap, two snapshots load at a time, and a session idle for ``SESSION_IDLE`` is closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import weakref
from typing import TYPE_CHECKING, Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.filter import Filter
from oa_node.nostr.messages import has_lone_surrogate
from oa_node.nostr.negentropy import Negentropy, NegentropyError, Storage

if TYPE_CHECKING:
    from oa_node.plugins.relay.connection import Connection
    from oa_node.plugins.relay.server import RelayServer

log = logging.getLogger("oa_node.relay.negentropy")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_NEG = re.compile(r'\s*\[\s*"NEG-')
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
MAX_SUBID_LENGTH = 64
#: Open sessions per connection: each holds a snapshot of up to negentropy_max_records.
MAX_SESSIONS = 8
#: Events of p-restricted kinds whose JSON is read at once to check who may see them.
VISIBILITY_BATCH = 500
#: All open sessions of the relay together hold at most this many times
#: negentropy_max_records (about 220 bytes a record), so many connections each opening
#: the largest allowed session cannot exhaust memory; past it NEG-OPEN is refused.
HELD_FACTOR = 2
#: Snapshots loading at once, relay-wide (each briefly holds two copies of its records).
MAX_LOADING = 2
#: Seconds a session may wait for the client's next NEG-MSG before it is closed.
SESSION_IDLE = 60.0


def _err(sub_id: str, reason: str) -> str:
    return _dumps(["NEG-ERR", sub_id, reason])


def _sessions(relay: RelayServer, conn: Connection) -> dict[str, _Session]:
    table = relay.state.get("negentropy")
    if table is None:
        table = relay.state["negentropy"] = weakref.WeakKeyDictionary()
    found = table.get(conn)
    if found is None:
        found = table[conn] = {}
    return found


class _Held:
    """Records held by the relay's open sessions, and the loads under way."""

    def __init__(self) -> None:
        self.records = 0
        self.loading = asyncio.Semaphore(MAX_LOADING)


def _held(relay: RelayServer) -> _Held:
    held = relay.state.get("negentropy_held")
    if held is None:
        held = relay.state["negentropy_held"] = _Held()
    return held


def _release(held: _Held, ticket: list[int]) -> None:
    held.records -= ticket[0]
    ticket[0] = 0


class _Session:
    """One open reconciliation; ``neg`` is None until its snapshot is loaded."""

    __slots__ = ("__weakref__", "closed", "held", "idle", "neg", "ready", "ticket")

    def __init__(self) -> None:
        self.neg: Negentropy | None = None
        self.closed = False
        self.ready = asyncio.Event()
        self.held: _Held | None = None
        self.ticket = [0]
        self.idle: asyncio.TimerHandle | None = None

    def hold(self, held: _Held, records: int) -> None:
        """Count this snapshot in the relay's total until the session ends (or, when its
        connection drops without NEG-CLOSE, until the session is collected)."""
        self.held = held
        self.ticket[0] = records
        held.records += records
        weakref.finalize(self, _release, held, self.ticket)

    def end(self) -> None:
        """Closed: answers still waiting for the snapshot give up; its records go."""
        self.closed = True
        self.ready.set()
        self.neg = None
        if self.held is not None:
            _release(self.held, self.ticket)
        if self.idle is not None:
            self.idle.cancel()


def frame_limit(relay: RelayServer) -> int:
    """Largest negentropy message (bytes) whose hex NEG-MSG fits a websocket frame."""
    return max(4096, relay.settings.limits.max_message_length // 2 - 256)


def dispatch(relay: RelayServer, conn: Connection, text: str) -> bool:
    """Handle ``text`` if it is a NEG-* frame (True), else leave it to the caller (False)."""
    if not _NEG.match(text[:32]):
        return False
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        conn.post(_dumps(["NOTICE", "invalid: NEG message is not JSON"]))
        return True
    if has_lone_surrogate(msg):  # not Unicode: could not be echoed back in a NEG-ERR
        conn.post(_dumps(["NOTICE", "invalid: NEG message has a lone UTF-16 surrogate"]))
        return True
    if not isinstance(msg, list) or len(msg) < 2 or not isinstance(msg[0], str):
        conn.post(_dumps(["NOTICE", "invalid: NEG message must be an array"]))
        return True
    typ, sub_id = msg[0], msg[1]
    if not isinstance(sub_id, str) or not 0 < len(sub_id) <= MAX_SUBID_LENGTH:
        conn.post(_dumps(["NOTICE", f"invalid: {typ[:16]} subscription id must be 1-64 chars"]))
        return True
    sessions = _sessions(relay, conn)
    if typ == "NEG-CLOSE":
        old = sessions.pop(sub_id, None)
        if old is not None:
            old.end()
    elif typ == "NEG-OPEN":
        _open(relay, conn, sessions, sub_id, msg)
    elif typ == "NEG-MSG":
        session = sessions.get(sub_id)
        if session is None:
            conn.post(_err(sub_id, "closed: no such negentropy session; send NEG-OPEN"))
        elif len(msg) != 3 or not isinstance(msg[2], str) or not _HEX.fullmatch(msg[2]):
            sessions.pop(sub_id, None)
            session.end()
            conn.post(_err(sub_id, "invalid: NEG-MSG needs one hex message"))
        else:
            conn.spawn(_answer(conn, sessions, sub_id, session, msg[2])).set_name("neg:" + sub_id)
    else:
        conn.post(_dumps(["NOTICE", f"invalid: unknown message type {typ[:32]!r}"]))
    return True


def _open(
    relay: RelayServer, conn: Connection, sessions: dict[str, _Session], sub_id: str, msg: list[Any]
) -> None:
    old = sessions.pop(sub_id, None)
    if old is not None:
        old.end()
    if len(msg) != 4 or not isinstance(msg[3], str) or not _HEX.fullmatch(msg[3]) or not msg[3]:
        conn.post(_err(sub_id, "invalid: NEG-OPEN needs a filter and a hex initial message"))
        return
    try:
        filt = Filter.from_dict(msg[2])
    except ProtocolError as exc:
        conn.post(_err(sub_id, f"invalid: {exc}"))
        return
    filters = [filt]
    reason = relay._filter_refusal(conn, filters)
    if reason is None and len(sessions) >= MAX_SESSIONS:
        reason = f"blocked: too many open negentropy sessions (max {MAX_SESSIONS})"
    hide = False
    if reason is None:
        reason, hide = relay._read_check(conn, filters)
    if reason is not None:
        conn.post(_err(sub_id, reason))
        return
    session = sessions[sub_id] = _Session()
    task = conn.spawn(
        _load_then_answer(relay, conn, sessions, sub_id, session, filt, hide, msg[3]))
    task.set_name("neg-open:" + sub_id)


def _records(pairs: list[tuple[int, str]]) -> Storage:
    """The session's sealed set from the store's (created_at, hex id) pairs."""
    return Storage([(ts, bytes.fromhex(eid)) for ts, eid in pairs])


async def _load_then_answer(
    relay: RelayServer,
    conn: Connection,
    sessions: dict[str, _Session],
    sub_id: str,
    session: _Session,
    filt: Filter,
    hide: bool,
    first: str,
) -> None:
    cap = relay.settings.limits.negentropy_max_records
    held = _held(relay)
    refusal = None
    try:
        async with held.loading:
            if session.closed:
                return
            # one more than the cap tells "too many" without reading the rest
            if hide:
                pairs = await _visible_pairs(relay, conn, filt, cap + 1 if cap else None)
            else:
                pairs = await relay.store.id_pairs(filt, cap + 1 if cap else None)
            if cap and len(pairs) > cap:
                refusal = f"blocked: too many records (max {cap}); narrow the filter"
            elif cap and held.records + len(pairs) > HELD_FACTOR * cap:
                refusal = "blocked: too many records in open negentropy sessions; retry later"
            elif not session.closed:
                storage = await asyncio.to_thread(_records, pairs)
                session.hold(held, len(storage))
            del pairs
    except Exception as exc:
        log.warning("negentropy snapshot failed: %s", exc)
        if not session.closed:
            _drop(sessions, sub_id, session)
            conn.post(_err(sub_id, "error: could not run this query"))
        return
    if session.closed:
        session.end()  # (closed while loading: give its records back)
        return
    if refusal is not None:
        _drop(sessions, sub_id, session)
        conn.post(_err(sub_id, refusal))
        return
    session.neg = Negentropy(storage, frame_limit(relay))
    session.ready.set()
    await _answer(conn, sessions, sub_id, session, first)


async def _visible_pairs(relay: RelayServer, conn: Connection, filt: Filter,
                         max_items: int | None) -> list[tuple[int, str]]:
    """The pairs of exactly the events a REQ with ``filt`` sends this connection, when
    some kinds it reaches are served only to some clients: the other kinds in one scan,
    the protected ones apart, each confirmed by its JSON (a batch at a time) with the
    REQ's own per-event check; unauthenticated, none is. A ``limit`` picks the newest
    before hiding, as a REQ's does. An event deleted between the reads is never
    confirmed, so never shown. At ``max_items`` or more the answer is cut short (the
    caller refuses it as too many)."""
    store = relay.store
    protected = relay._protected if filt.kinds is None else relay._protected & filt.kinds
    pairs = await store.id_pairs(filt, max_items, exclude_kinds=protected)
    shut: list[tuple[int, str]] = []
    if protected and (conn.authed or filt.limit is not None):  # (a limit counts them too)
        shut = await store.id_pairs(dataclasses.replace(filt, kinds=set(protected)),
                                    max_items)
        pairs += shut
    if filt.limit is not None and len(pairs) > filt.limit:  # the newest, as query keeps them
        pairs.sort(key=lambda p: (-p[0], p[1]))
        pairs = pairs[: filt.limit]
    if max_items is not None and len(pairs) >= max_items:
        return pairs
    if shut:
        shut_ids = {eid for _, eid in shut}
        check = [eid for _, eid in pairs if eid in shut_ids] if conn.authed else []
        shown: set[str] = set()
        for i in range(0, len(check), VISIBILITY_BATCH):
            for raw in await store.query([Filter(ids=set(check[i : i + VISIBILITY_BATCH]))]):
                if relay._visible_raw(conn, raw):
                    shown.add(json.loads(raw)["id"])
        pairs = [p for p in pairs if p[1] not in shut_ids or p[1] in shown]
    pairs.sort()
    return pairs


def _expire(conn: Connection, sessions: dict[str, _Session], sub_id: str,
            session: _Session) -> None:
    """No NEG-MSG for SESSION_IDLE seconds: the snapshot is not held for an idle client."""
    if not session.closed:
        _drop(sessions, sub_id, session)
        conn.post(_err(sub_id, f"closed: no NEG-MSG for {SESSION_IDLE:g}s"))


def _drop(sessions: dict[str, _Session], sub_id: str, session: _Session) -> None:
    session.end()
    if sessions.get(sub_id) is session:
        del sessions[sub_id]


async def _answer(
    conn: Connection, sessions: dict[str, _Session], sub_id: str, session: _Session, hexmsg: str
) -> None:
    await session.ready.wait()  # a NEG-MSG may arrive while the snapshot loads
    neg = session.neg
    if session.closed or neg is None:
        return
    try:
        out, _, _ = neg.reconcile(bytes.fromhex(hexmsg))
    except NegentropyError as exc:
        _drop(sessions, sub_id, session)
        conn.post(_err(sub_id, f"invalid: {exc}"))
        return
    if session.idle is not None:
        session.idle.cancel()
    session.idle = asyncio.get_running_loop().call_later(
        SESSION_IDLE, _expire, conn, sessions, sub_id, session)
    if not session.closed and out is not None:
        conn.post(_dumps(["NEG-MSG", sub_id, out.hex()]))
