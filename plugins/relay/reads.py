"""The relay's REQ / CLOSE / COUNT path: who may read what (NIP-42 protected kinds), filter
clamping, replay of stored events and live subscriptions.
"""

from __future__ import annotations

import asyncio
import logging

from oa_node.nostr.filter import Filter
from oa_node.plugins.relay.connection import (
    MAX_QUERIES_PER_CONNECTION,
    Connection,
    _closed,
    _dumps,
)
from oa_node.plugins.relay.subindex import Subscription

log = logging.getLogger("oa_node.relay")

#: Seconds a subscription remembers the stored events it was sent (see Subscription.sent).
SENT_MEMORY = 2.0


class ReadsMixin:
    """REQ, CLOSE and COUNT: read checks, stored-event replay and live subscriptions, mixed
    into :class:`~.server.RelayServer` (whose ``__init__`` sets what these methods use)."""

    # --- REQ / CLOSE / COUNT ---------------------------------------------------------

    def _read_check(self, conn: Connection, filters: list[Filter]) -> tuple[str | None, bool]:
        """(refusal, needs per-event visibility check) for a REQ/COUNT under [relay.auth]."""
        if self.settings.auth.read and not conn.authed:
            return "auth-required: authenticate (NIP-42) to read from this relay", False
        protected = self._protected
        if not protected:
            return None, False
        hide = False
        for f in filters:
            if f.kinds is None:
                hide = True
                continue
            hit = f.kinds & protected
            if not hit:
                continue
            if not conn.authed:
                kinds = ",".join(str(k) for k in sorted(hit))
                return f"auth-required: kinds {kinds} are only served after NIP-42 auth", False
            if f.kinds <= self._p_kinds:
                p_ok = f.tags.get("p")
                mine = (p_ok is not None and p_ok <= conn.authed) or (
                    f.authors is not None and f.authors <= conn.authed
                )
                asks_others = (p_ok is not None or f.authors is not None) and not (
                    (p_ok is not None and p_ok & conn.authed)
                    or (f.authors is not None and f.authors & conn.authed)
                )
                if asks_others:
                    return "restricted: these events are only served to their recipients", False
                if mine:
                    continue
            hide = True
        return None, hide

    def _read_refusal(self, conn: Connection, filters: list[Filter], what: str) -> str | None:
        """:meth:`_read_check` for an answer that cannot hide single events (COUNT):
        filters reaching events served only to their recipients are refused whole."""
        reason, hide = self._read_check(conn, filters)
        if reason is None and hide:
            reason = f"restricted: cannot {what} events that are only served to their recipients"
        return reason

    def _filter_refusal(self, conn: Connection, filters: list[Filter]) -> str | None:
        for policy in self._filter_policies:
            reason = policy(filters, conn)
            if reason:
                return reason
        return None

    def _clamp(self, filters: list[Filter]) -> None:
        lim = self.settings.limits
        default = lim.default_limit or lim.max_limit or None
        for f in filters:
            if f.limit is None:
                f.limit = default
            elif lim.max_limit and f.limit > lim.max_limit:
                f.limit = lim.max_limit

    def _on_req(self, conn: Connection, sub_id: str, filters: list[Filter]) -> None:
        reason = self._filter_refusal(conn, filters)
        max_subs = self.settings.limits.max_subscriptions
        if reason is None and max_subs and sub_id not in conn.subs and len(conn.subs) >= max_subs:
            reason = f"blocked: too many open subscriptions (max {max_subs}); CLOSE some first"
        hide = False
        if reason is None:
            reason, hide = self._read_check(conn, filters)
        old = conn.subs.pop(sub_id, None)
        if old is not None:
            self._end_sub(old)
        sub = Subscription(conn, sub_id, filters, _dumps(sub_id))
        budget = self.settings.limits.max_connection_filter_values
        if reason is None and budget:
            held = sum(s.values for s in conn.subs.values())
            if held + sub.values > budget:
                reason = (f"blocked: max_connection_filter_values is {budget}: this REQ's "
                          f"{sub.values} filter values with the {held} your open "
                          "subscriptions hold exceed it; CLOSE some first")
        if reason is not None:
            conn.post(_closed(sub_id, reason))
            return
        self._clamp(filters)
        conn.subs[sub_id] = sub
        self.index.add(sub)
        conn.queued[sub] = hide
        self._next_queries(conn)

    def _next_queries(self, conn: Connection) -> None:
        """Start queued stored-event queries while the connection has fewer than
        ``MAX_QUERIES_PER_CONNECTION`` running; the others wait their turn in order.

        Waiting, not refusing: every REQ still gets its events and EOSE, and what waits is
        bounded by ``max_subscriptions`` (only open subscriptions wait; a CLOSE or a REQ
        reusing the id takes its query out of the queue, so a REQ/CLOSE flood runs at most
        the bound of queries at a time instead of one per REQ)."""
        queued = conn.queued
        while queued and conn.querying < MAX_QUERIES_PER_CONNECTION and not conn.closed:
            item = next(iter(queued))
            hide = queued.pop(item)
            conn.querying += 1
            if type(item) is _Count:
                task = conn.spawn(self._count(conn, item.sub_id, item.filters))
                task.set_name("req:count:" + item.sub_id)
            else:
                task = conn.spawn(self._serve_stored(conn, item, hide))
                task.set_name("req:" + item.sub_id)

    async def _serve_stored(self, conn: Connection, sub: Subscription, hide: bool) -> None:
        try:
            if not sub.closed:  # closed between its turn and this task's start
                await self._send_stored(conn, sub, hide)
        finally:
            conn.querying -= 1
            self._next_queries(conn)

    async def _send_stored(self, conn: Connection, sub: Subscription, hide: bool) -> None:
        try:
            raws = await self.store.query(sub.filters)
        except Exception as exc:
            log.warning("query failed: %s", exc)
            if not sub.closed:
                conn.post(_closed(sub.sub_id, "error: could not run this query"))
                if conn.subs.get(sub.sub_id) is sub:
                    del conn.subs[sub.sub_id]
                self._end_sub(sub)
            return
        if sub.closed:
            return
        if hide:
            raws = [r for r in raws if self._visible_raw(conn, r)]
        prefix = '["EVENT",' + sub.sub_id_json + ","
        post = conn.post
        batch = [prefix + raw + "]" for raw in raws]
        batch.append('["EOSE",' + sub.sub_id_json + "]")
        conn.post_many(batch)
        buffered, sub.buffer = sub.buffer, None
        sub.live = True
        sent = set(raws)
        for raw in buffered or ():
            if raw not in sent:
                post(prefix + raw + "]")
        if sent:
            sub.sent = sent
            asyncio.get_running_loop().call_later(SENT_MEMORY, _forget_sent, sub)

    def _overflowed(self, sub: Subscription) -> None:
        """More live events arrived for ``sub`` before its EOSE than a connection may have
        queued (its stored-event query waits its turn or runs long): end it, as a slow
        reader's connection is ended, instead of holding them without bound."""
        conn = sub.conn
        if conn.subs.get(sub.sub_id) is sub:
            del conn.subs[sub.sub_id]
        self._end_sub(sub)
        conn.post(_closed(sub.sub_id, "error: too many live events arrived before this "
                          "subscription's stored events were sent; REQ again"))

    def _on_close(self, conn: Connection, sub_id: str) -> None:
        sub = conn.subs.pop(sub_id, None)
        if sub is not None:
            self._end_sub(sub)

    def _end_sub(self, sub: Subscription) -> None:
        """Stop a subscription's live delivery and drop what it holds at once: its
        remembered stored events would otherwise stay alive for ``SENT_MEMORY`` seconds,
        which a client looping REQ/CLOSE turns into tens of MB (benchmarks/relay.py)."""
        sub.closed = True
        if sub.conn is not None:
            sub.conn.queued.pop(sub, None)
        sub.sent = None
        sub.buffer = None
        self.index.remove(sub)

    def _on_count(self, conn: Connection, sub_id: str, filters: list[Filter]) -> None:
        reason = self._filter_refusal(conn, filters) or self._read_refusal(conn, filters, "count")
        if reason is None and sum(type(q) is _Count for q in conn.queued) >= MAX_QUEUED_COUNTS:
            reason = (f"blocked: too many pending queries ({MAX_QUEUED_COUNTS} COUNTs "
                      "already wait on this connection)")
        if reason is not None:
            conn.post(_closed(sub_id, reason))
            return
        conn.queued[_Count(sub_id, filters)] = False
        self._next_queries(conn)

    async def _count(self, conn: Connection, sub_id: str, filters: list[Filter]) -> None:
        try:
            n = await self.store.count(filters)
        except Exception as exc:
            log.warning("count failed: %s", exc)
            conn.post(_closed(sub_id, "error: could not count"))
            return
        finally:
            conn.querying -= 1
            self._next_queries(conn)
        conn.post(_dumps(["COUNT", sub_id, {"count": n}]))


class _Count:
    """A COUNT waiting for its turn among the connection's queries."""

    __slots__ = ("filters", "sub_id")

    def __init__(self, sub_id: str, filters: list[Filter]) -> None:
        self.sub_id = sub_id
        self.filters = filters


#: COUNTs one connection may have waiting (they hold no subscription that would bound them)
MAX_QUEUED_COUNTS = 16


def _forget_sent(sub: Subscription) -> None:
    sub.sent = None
