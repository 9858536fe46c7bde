"""The :class:`Trajectories` capability: record what an agent does as a NIP-SA trajectory, and
read one back from relays.

A plugin that does work others may want to audit (the provider running a job, GitAfter
sending a patch) records it without importing the plugin that implements recording::

    traj = node.capability(Trajectories)          # or None
    rec = await traj.start(participants=[buyer], repo=url, sha=commit)
    await rec.record("tool_start", {"tool": "docker", "cmd": "pytest"})
    ...
    ref = await rec.end()      # publishes session_end, closes the session
    tags += ref.tags()         # ["trajectory", id, relay], ["trajectory_hash", h]

Every ``record`` signs and publishes one event as it happens; the events form a hash chain
(see :mod:`oa_node.nostr.nipsa` for the wire format and the ``trajectory_hash`` rule).
:func:`read_trajectory` is the reader side: anyone with a relay pool can rebuild a session
and check it, with no help from the agent that wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oa_node.errors import UserError
from oa_node.nostr.kinds import TRAJECTORY_EVENT, TRAJECTORY_SESSION
from oa_node.nostr.nipsa.trajectory import TrajectoryReport, session_coordinate, verify_trajectory

if TYPE_CHECKING:
    from oa_node.client import RelayPool

class TrajectoryError(UserError):
    """A trajectory that cannot be recorded (no relay took an event) or read."""


@dataclass(frozen=True)
class TrajectoryRef:
    """How a result or a patch points at the trajectory that produced it."""

    session_id: str
    relay: str
    trajectory_hash: str
    author: str

    def tags(self) -> list[list[str]]:
        """``["trajectory", <session>, <relay>]`` and ``["trajectory_hash", <sha256>]``."""
        return [["trajectory", self.session_id, self.relay],
                ["trajectory_hash", self.trajectory_hash]]

    @classmethod
    def from_tags(cls, tags: Sequence[Sequence[str]], author: str) -> TrajectoryRef | None:
        """The reference carried by an event's tags (``author`` = that event's pubkey)."""
        session = relay = digest = None
        for t in tags:
            if t and t[0] == "trajectory" and len(t) >= 2:
                session, relay = t[1], (t[2] if len(t) > 2 else "")
            elif t and t[0] == "trajectory_hash" and len(t) >= 2:
                digest = t[1]
        if session is None or digest is None:
            return None
        return cls(session, relay or "", digest, author)


@runtime_checkable
class TrajectoryRecorder(Protocol):
    """One running session. Calls are serialised in call order; safe from several tasks."""

    @property
    def session_id(self) -> str: ...

    @property
    def root(self) -> str:
        """Id of the session's first 39230 event."""
        ...

    @property
    def count(self) -> int:
        """Events recorded so far."""
        ...

    async def record(self, type: str, payload: Mapping[str, Any] | None = None) -> str:
        """Sign and publish the next event; ``type`` is one of
        :data:`oa_node.nostr.nipsa.TRAJECTORY_EVENT_TYPES` (not ``session_end``). Returns
        the event id. Raises :class:`TrajectoryError` only when the session is closed;
        an event no relay took is kept and re-sent before the next one."""
        ...

    async def end(self, payload: Mapping[str, Any] | None = None) -> TrajectoryRef:
        """Record ``session_end``, republish the session with its hash, and return the
        reference. Raises :class:`TrajectoryError` if some event still reached no relay."""
        ...


@runtime_checkable
class Trajectories(Protocol):
    """What ``node.capability(Trajectories)`` returns (the ``nipsa`` plugin's recorder)."""

    async def start(
        self, *, participants: Iterable[str] = (), repo: str | None = None,
        sha: str | None = None, model: str | None = None, tick: str | None = None,
        session_id: str | None = None,
    ) -> TrajectoryRecorder:
        """Publish a 39230 and return its recorder (``session_id`` defaults to a random
        one; ``participants`` are hex pubkeys, e.g. the buyer)."""
        ...

    async def read(self, session_id: str, author: str | None = None, *,
                   expected_hash: str | None = None, timeout: float = 10.0) -> TrajectoryReport:
        """:func:`read_trajectory` over the node's relays."""
        ...


async def read_trajectory(
    pool: RelayPool, session_id: str, author: str | None = None, *,
    expected_hash: str | None = None, timeout: float = 10.0,
) -> TrajectoryReport:
    """Fetch a session's 39230 and all its 39231s from every relay in ``pool`` and verify
    them (:func:`oa_node.nostr.nipsa.verify_trajectory`). Without ``author`` the session id
    must name exactly one author's session."""
    session_filter: dict[str, Any] = {"kinds": [TRAJECTORY_SESSION], "#d": [session_id]}
    if author is not None:
        session_filter["authors"] = [author]
    sessions = await pool.query(session_filter, timeout)
    if author is None:
        authors = sorted({e.pubkey for e in sessions if e.verify()})
        if not authors:
            raise TrajectoryError(f"trajectory {session_id}: no session found on "
                                  f"{', '.join(pool.relays) or 'no relays'}")
        if len(authors) > 1:
            raise TrajectoryError(f"trajectory {session_id}: sessions by {len(authors)} "
                                  f"authors; name one with --author")
        author = authors[0]
    events = await pool.query(
        {"kinds": [TRAJECTORY_EVENT], "authors": [author],
         "#a": [session_coordinate(author, session_id)]}, timeout)
    return verify_trajectory(session_id, author, [*sessions, *events],
                             expected_hash=expected_hash)


def reading_relays(relays: Sequence[str], hint: str, *,
                   allow_hinted_relays: bool = False) -> list[str]:
    """Where to read a referenced trajectory: ``relays`` (the node's, or the ones the user
    passed), plus the relay a result or a patch names only when ``allow_hinted_relays``.

    The hint is written by whoever published the reference: following it by default would
    let any provider or contributor make the reader connect wherever it likes (an address
    on the reader's network, a tracker). A malformed hint is dropped.
    """
    from oa_node.client import ClientError
    from oa_node.client.urls import normalize_relay_url

    out = list(dict.fromkeys(relays))
    if allow_hinted_relays and hint:
        try:
            url = normalize_relay_url(hint)
        except ClientError:
            return out
        if url not in out:
            out.append(url)
    return out


async def read_ref(pool: RelayPool, ref: TrajectoryRef, *, timeout: float = 10.0,
                   allow_hinted_relays: bool = False) -> TrajectoryReport:
    """Audit a reference taken from a result or patch (:meth:`TrajectoryRef.from_tags`):
    read the session from ``pool`` and check it against the referenced hash. The relay the
    reference names is contacted only with ``allow_hinted_relays`` (:func:`reading_relays`);
    the caller's pool is never changed."""
    from oa_node.client import RelayPool as Pool

    relays = reading_relays(pool.relays, ref.relay, allow_hinted_relays=allow_hinted_relays)
    if relays == list(pool.relays):
        report = await read_trajectory(pool, ref.session_id, ref.author,
                                       expected_hash=ref.trajectory_hash, timeout=timeout)
    else:
        async with Pool(relays) as wider:
            report = await read_trajectory(wider, ref.session_id, ref.author,
                                           expected_hash=ref.trajectory_hash, timeout=timeout)
    if not report.ok and reading_relays(relays, ref.relay, allow_hinted_relays=True) != relays:
        report.problems.append("the reference names another relay, not contacted (allow"
                               " hinted relays to read it there)")
    return report
