"""The event storage interface every backend implements (SQLite, PostgreSQL, ...).

The relay keeps the exact JSON text of each event it accepted and hands that same string
back on queries, so a stored event is never re-serialised. Backends apply the NIP-01
replaceable/addressable rules, NIP-09 deletions and NIP-40 expiry themselves, so every
backend gives the same answers (one storage test suite runs against all of them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from oa_node.nostr import Event, Filter


class SaveStatus(enum.Enum):
    """What ``save`` did with one event."""

    STORED = "stored"
    #: the same id is already stored (or was stored and then replaced)
    DUPLICATE = "duplicate"
    #: a replaceable/addressable event older than the version already stored
    SUPERSEDED = "superseded"
    #: the author deleted this event (NIP-09) before it arrived
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class SaveResult:
    status: SaveStatus
    #: a NIP-01 ``OK`` message with its machine-readable prefix (empty when stored)
    message: str = ""

    @property
    def accepted(self) -> bool:
        """True when the relay answers ``OK true`` (stored, or harmless repeat)."""
        return self.status in (SaveStatus.STORED, SaveStatus.DUPLICATE, SaveStatus.SUPERSEDED)

    @property
    def is_new(self) -> bool:
        """True when the event is new and must be delivered to live subscribers."""
        return self.status is SaveStatus.STORED


STORED = SaveResult(SaveStatus.STORED)
DUPLICATE = SaveResult(SaveStatus.DUPLICATE, "duplicate: already have this event")
SUPERSEDED = SaveResult(SaveStatus.SUPERSEDED, "duplicate: have a newer version of this event")
DELETED = SaveResult(SaveStatus.DELETED, "blocked: this event was deleted by its author")

#: Called with the raw JSON of an event that another process sharing the store accepted.
LiveListener = Callable[[str], None]


class StoreError(Exception):
    """The store cannot do what was asked (closed, unreachable, corrupt)."""


@runtime_checkable
class EventStore(Protocol):
    """Async event storage. Implementations must be safe to call from one event loop."""

    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def save(self, event: Event, raw: str) -> SaveResult:
        """Store ``event`` (already verified) whose JSON text is ``raw``.

        Returns only once the event is durable (committed), so an ``OK true`` sent after
        it survives a crash. Kind 5 events also delete what they reference (NIP-09).
        Ephemeral events must not be passed here.
        """

    async def has(self, event_id: str) -> bool:
        """True if ``event_id`` is stored (cheap: answers duplicates without verifying)."""

    async def query(self, filters: Sequence[Filter], now: int | None = None) -> list[str]:
        """Raw JSON of the events matching any filter, newest first (ties: lowest id first),
        each filter's ``limit`` applied to that filter, no event twice, none expired."""

    async def id_pairs(self, filt: Filter, max_items: int | None = None,
                       now: int | None = None, exclude_kinds: Collection[int] = ()
                       ) -> list[tuple[int, str]]:
        """``(created_at, id)`` of the events ``filt`` matches (its ``limit`` kept: the
        newest, as :meth:`query` picks them), sorted ascending by created_at then id (the
        order of NIP-77 negentropy), at most ``max_items``, none of ``exclude_kinds``
        (kinds a relay serves only to some clients, answered apart). No event JSON is
        read, so a set reconciliation can cover a large store: callers bound memory with
        ``max_items`` (ask for one more than allowed to tell "too many")."""

    async def count(self, filters: Sequence[Filter], now: int | None = None) -> int:
        """How many distinct stored, unexpired events match any filter (``limit`` ignored)."""

    async def delete_ids(self, ids: Sequence[str]) -> int:
        """Remove events by id (operator action, not NIP-09); returns how many went."""

    async def purge_expired(self, now: int) -> int:
        """Delete events whose NIP-40 expiration is at or before ``now``."""

    async def flush(self) -> None:
        """Wait until every accepted ``save`` is committed."""

    async def close(self) -> None:
        """Flush pending writes and release connections; later calls raise StoreError."""

    def set_live_listener(self, listener: LiveListener | None) -> None:
        """Deliver events stored by *other* processes sharing this store (PostgreSQL
        LISTEN/NOTIFY); a store that cannot be shared never calls it."""

    async def publish_ephemeral(self, raw: str) -> None:
        """Share an ephemeral event with other processes on this store (no-op if unshared)."""
