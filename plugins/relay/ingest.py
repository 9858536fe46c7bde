"""The relay's EVENT path and live fan-out: an EVENT is answered from a recent-ids cache or a
store probe before any signature work; verified events go to the store's batching writer
and the connection keeps reading while the batch commits (``OK`` follows the commit); the
event's JSON text as received is stored and sent out again, never re-serialised; live
fan-out consults a subscription index.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.kinds import DELETION, is_addressable, is_ephemeral, is_replaceable
from oa_node.plugins.relay.connection import Connection, _ok
from oa_node.store import SaveResult, StoreError

log = logging.getLogger("oa_node.relay")

#: Ids remembered to answer repeats without a store probe.
RECENT_IDS = 50_000
#: Largest expiration accepted: stores keep it in a signed 64-bit column.
MAX_EXPIRATION = 2**63 - 1


class IngestMixin:
    """EVENT handling and live fan-out, mixed into :class:`~.server.RelayServer` (whose
    ``__init__`` sets the store, policies, index and recent-ids cache these methods use)."""

    # --- EVENT -----------------------------------------------------------------------

    async def _on_event(self, conn: Connection, event: Event, raw: str | None) -> None:
        eid = event.id
        if self._closing:
            conn.post(_ok(eid, False, "error: relay is shutting down, try again later"))
            return
        reason = _first_refusal(self._event_policies, event, conn)
        if reason:
            conn.post(_ok(eid, False, reason))
            return
        if (self.settings.auth.write or event.kind in self._write_kinds) and not conn.authed:
            conn.post(_ok(eid, False, "auth-required: authenticate (NIP-42) to publish here"))
            return
        if eid in self._recent:
            conn.post(_ok(eid, True, "duplicate: already have this event"))
            return
        ephemeral = is_ephemeral(event.kind)
        try:
            if not ephemeral and self._probe_first and await self.store.has(eid):
                self._remember(eid, event.kind)
                conn.post(_ok(eid, True, "duplicate: already have this event"))
                return
        except StoreError as exc:
            conn.post(_ok(eid, False, f"error: storage unavailable ({exc})"))
            return
        if not event.verify():
            conn.post(_ok(eid, False, "invalid: bad event id or signature"))
            return
        reason = _first_refusal(self._verified_event_policies, event, conn)
        if reason:
            conn.post(_ok(eid, False, reason))
            return
        exp = event.expiration
        if exp is None and _has_expiration_tag(event):
            conn.post(_ok(eid, False, "invalid: malformed expiration tag (NIP-40: a unix "
                          f"timestamp in seconds, 0..{MAX_EXPIRATION})"))
            return
        if exp is not None and exp > MAX_EXPIRATION:
            conn.post(_ok(eid, False, f"invalid: expiration beyond {MAX_EXPIRATION}"))
            return
        if exp is not None and exp <= time.time():
            conn.post(_ok(eid, False, "invalid: event has expired"))
            return
        if raw is None:
            raw = event.to_json()
        if ephemeral:
            self._remember(eid, event.kind)
            conn.post(_ok(eid, True, ""))
            self.broadcast(event, raw)
            with contextlib.suppress(StoreError):
                await self.store.publish_ephemeral(raw)
            return
        await conn.inflight.acquire()
        submit = self._submit
        if submit is None:
            conn.spawn(self._finish_save(conn, event, raw))
            return
        conn.saving += 1
        try:
            submit(event, raw, lambda outcome: self._saved(conn, event, raw, outcome))
        except BaseException:
            conn.saving -= 1
            conn.inflight.release()
            raise

    async def _finish_save(self, conn: Connection, event: Event, raw: str) -> None:
        """A store without ``submit``: wait for the save in a task of its own."""
        conn.saving += 1
        outcome: SaveResult | BaseException
        try:
            outcome = await self.store.save(event, raw)
        except Exception as exc:
            outcome = exc
        self._saved(conn, event, raw, outcome)

    def _saved(self, conn: Connection, event: Event, raw: str,
               outcome: SaveResult | BaseException) -> None:
        """The store answered: ``OK`` (after the commit), then live fan-out of a new event.
        While more of the connection's saves are pending, its ``OK``s are corked, so those
        answered by one commit leave in one socket write."""
        conn.inflight.release()
        conn.saving -= 1
        if isinstance(outcome, BaseException):
            if isinstance(outcome, StoreError):
                conn.post(_ok(event.id, False, f"error: could not store the event ({outcome})"))
            else:
                log.error("saving event %s failed", event.id, exc_info=outcome)
                conn.post(_ok(event.id, False, "error: could not store the event"))
            return
        result = outcome
        if result.accepted:
            self._remember(event.id, event.kind)
        ok = _ok(event.id, result.accepted, result.message)
        if conn.saving:
            conn.post_soon(ok)
        else:  # the last one pending: out now, with any corked before it
            conn.post(ok)
        if result.is_new:
            self.events_ingested += 1
            self._deliver_new(event, raw)

    def _deliver_new(self, event: Event, raw: str) -> None:
        """Fan out a newly stored event (ours or another process's); a deletion first
        drops its targets from the recent-ids cache, so a repeat of one reaches the store
        and is refused there instead of being answered "duplicate"."""
        if event.kind == DELETION:
            for target in event.tag_values("e"):
                self._recent.pop(target, None)
        self.events_delivered += self.broadcast(event, raw)

    def _remember(self, eid: str, kind: int) -> None:
        """Cache an id so a repeat is answered without a store probe. Replaceable and
        addressable events are not cached: an ``a``-tag deletion or a newer version removes
        them by address, and the cache could not tell which ids went."""
        if is_replaceable(kind) or is_addressable(kind):
            return
        recent = self._recent
        recent[eid] = None
        if len(recent) > RECENT_IDS:
            del recent[next(iter(recent))]

    # --- live fan-out ----------------------------------------------------------------

    def broadcast(self, event: Event, raw: str) -> int:
        """Send ``event`` to every live subscription matching it; returns how many."""
        protected = event.kind in self._protected
        n = 0
        for sub in self.index.matching(event):
            conn = sub.conn
            if protected and not self._visible(conn, event.kind, event.pubkey, event.tags):
                continue
            buffer = sub.buffer
            if buffer is not None:
                buffer.append(raw)
                sub.buffered_chars += len(raw)
                if conn.over_pending(len(buffer), sub.buffered_chars):
                    self._overflowed(sub)
            elif sub.sent is None or raw not in sub.sent:
                conn.post('["EVENT",' + sub.sub_id_json + "," + raw + "]")
            n += 1
        return n

    def _on_remote_event(self, raw: str) -> None:
        """An event another relay process stored or relayed (shared PostgreSQL)."""
        try:
            event = Event.from_json(raw)
        except ProtocolError:
            return
        if event.id in self._recent:
            return
        self._remember(event.id, event.kind)
        self._deliver_new(event, raw)

    def _visible(self, conn: Connection, kind: int, pubkey: str, tags: list[list[str]]) -> bool:
        authed = conn.authed
        if not authed:
            return False
        if kind in self._p_kinds:
            if pubkey in authed:
                return True
            return any(len(t) > 1 and t[0] == "p" and t[1] in authed for t in tags)
        return True  # read_kinds: any authenticated client

    def _visible_raw(self, conn: Connection, raw: str) -> bool:
        obj = json.loads(raw)
        kind = obj.get("kind")
        if kind not in self._protected:
            return True
        return self._visible(conn, kind, obj.get("pubkey", ""), obj.get("tags", []))


def _first_refusal(policies: list[Any], event: Event, conn: Connection) -> str | None:
    """The first policy's refusal of ``event``, or None when every one lets it through."""
    for policy in policies:
        reason = policy(event, conn)
        if reason:
            return reason
    return None


def _has_expiration_tag(event: Event) -> bool:
    return any(t and t[0] == "expiration" for t in event.tags)
