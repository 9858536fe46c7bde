"""NIP-SA trajectories: sessions (39230), steps (39231), the ``trajectory_hash`` rule and
the verifier (see the package docstring for the wire format)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex
from oa_node.nostr.kinds import (
    TRAJECTORY_EVENT,
    TRAJECTORY_SESSION,
)
from oa_node.nostr.nipsa.common import (
    MAX_LISTED_MISSING,
    SESSION_END,
    TRAJECTORY_EVENT_TYPES,
    check_identifier,
    check_pubkey,
    content_json,
    expect_kind,
    int_tag,
    json_object,
    neg_id,
)


def session_coordinate(pubkey: str, session_id: str) -> str:
    """The ``a`` coordinate of a session, which every one of its events carries."""
    return f"{TRAJECTORY_SESSION}:{pubkey}:{session_id}"


@dataclass
class TrajectorySession:
    session_id: str
    started_at: int
    participants: list[str] = field(default_factory=list)
    repo: str | None = None
    sha: str | None = None
    model: str | None = None
    tick: str | None = None
    # set on the closing version
    ended_at: int | None = None
    total_events: int | None = None
    trajectory_hash: str | None = None
    root: str | None = None

    def to_template(self, created_at: int | None = None) -> EventTemplate:
        check_identifier(self.session_id, "session id")
        for p in self.participants:
            check_pubkey(p, "session participant")
        tags: list[list[str]] = [["d", self.session_id]]
        tags += [["p", p] for p in self.participants]
        for name in ("repo", "sha", "model", "tick"):
            value = getattr(self, name)
            if value:
                tags.append([name, value])
        tags.append(["started_at", str(self.started_at)])
        content: dict[str, Any] = {
            "session_id": self.session_id,
            "started_at": self.started_at,
            "participants": list(self.participants),
        }
        for name in ("repo", "sha", "model"):
            if getattr(self, name):
                content[name] = getattr(self, name)
        if self.ended_at is not None:
            if self.root is None or self.total_events is None or self.trajectory_hash is None:
                raise ProtocolError(
                    "invalid", "session: a closed session needs root, total_events and hash"
                )
            tags += [
                ["ended_at", str(self.ended_at)],
                ["root", self.root],
                ["total_events", str(self.total_events)],
                ["trajectory_hash", self.trajectory_hash],
            ]
            content.update(
                ended_at=self.ended_at,
                total_events=self.total_events,
                trajectory_hash=self.trajectory_hash,
            )
        return EventTemplate(TRAJECTORY_SESSION, content_json(content), tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> TrajectorySession:
        expect_kind(event, TRAJECTORY_SESSION, "trajectory session")
        started = int_tag(event, "started_at", "trajectory session", default=event.created_at)
        digest = event.first_tag_value("trajectory_hash")
        if digest is not None and not is_hex(digest, 32):
            raise ProtocolError("invalid", "trajectory session: trajectory_hash is not sha256 hex")
        return cls(
            session_id=event.d_tag,
            started_at=started or 0,
            participants=event.tag_values("p"),
            repo=event.first_tag_value("repo"),
            sha=event.first_tag_value("sha"),
            model=event.first_tag_value("model"),
            tick=event.first_tag_value("tick"),
            ended_at=int_tag(event, "ended_at", "trajectory session"),
            total_events=int_tag(event, "total_events", "trajectory session"),
            trajectory_hash=digest,
            root=event.first_tag_value("root"),
        )


def trajectory_event_template(
    *,
    pubkey: str,
    session_id: str,
    root: str,
    seq: int,
    previous: str | None,
    type: str,
    payload: Mapping[str, Any] | None = None,
    created_at: int | None = None,
) -> EventTemplate:
    """The 39231 for step ``seq`` of a session (``previous`` = id of step ``seq - 1``)."""
    check_identifier(session_id, "session id")
    if type not in TRAJECTORY_EVENT_TYPES:
        raise ProtocolError(
            "invalid",
            f"trajectory event type {type!r} is not one of "
            f"{', '.join(sorted(TRAJECTORY_EVENT_TYPES))}",
        )
    if seq < 0 or (seq == 0) != (previous is None):
        raise ProtocolError(
            "invalid", "trajectory event: seq 0 has no previous event; every later one has one"
        )
    body = dict(payload or {})
    if "type" in body:
        raise ProtocolError("invalid", "trajectory event payload must not contain 'type'")
    body["type"] = type
    tags = [
        ["d", f"{session_id}:{seq}"],
        ["a", session_coordinate(pubkey, session_id)],
        ["e", root, "", "root"],
    ]
    if previous is not None:
        tags.append(["e", previous, "", "reply"])
    tags += [["session", session_id], ["seq", str(seq)], ["step", type]]
    return EventTemplate(TRAJECTORY_EVENT, content_json(body), tags, created_at)


@dataclass(frozen=True)
class TrajectoryStep:
    """A parsed 39231."""

    seq: int
    type: str
    payload: dict[str, Any]
    root: str | None
    previous: str | None
    event: Event

    @classmethod
    def from_event(cls, event: Event, session_id: str) -> TrajectoryStep:
        expect_kind(event, TRAJECTORY_EVENT, "trajectory event")
        if event.first_tag_value("session") != session_id:
            raise ProtocolError("invalid", "trajectory event: belongs to another session")
        seq = int_tag(event, "seq", "trajectory event")
        if seq is None:
            raise ProtocolError("invalid", "trajectory event: missing the 'seq' tag")
        if event.d_tag != f"{session_id}:{seq}":
            raise ProtocolError(
                "invalid",
                f"trajectory event: d tag {event.d_tag!r} does not "
                f"match session {session_id!r} seq {seq}",
            )
        body = json_object(event.content, "trajectory event")
        kind = body.pop("type", None)
        if kind not in TRAJECTORY_EVENT_TYPES:
            raise ProtocolError("invalid", f"trajectory event: unknown type {kind!r}")
        root = previous = None
        for t in event.tags:
            if t[0] == "e" and len(t) >= 4:
                if t[3] == "root":
                    root = t[1]
                elif t[3] == "reply":
                    previous = t[1]
        return cls(seq, kind, body, root, previous, event)


def _missing_seqs(present: Sequence[int], last: int) -> tuple[list[int], int]:
    """The first :data:`MAX_LISTED_MISSING` numbers in ``0..last`` absent from ``present``
    (sorted, distinct) and how many are absent in all, without walking the whole range."""
    listed: list[int] = []
    expected = 0
    for seq in [*present, last + 1]:
        if seq > expected:
            listed.extend(range(expected, min(seq, expected + MAX_LISTED_MISSING - len(listed))))
        expected = seq + 1
    return listed, last + 1 - len(present)


def trajectory_hash(event_ids: Iterable[str]) -> str:
    """SHA-256 of the compact JSON array of the ids, in the given (seq) order."""
    ids = list(event_ids)
    for i in ids:
        if not is_hex(i, 32) or i != i.lower():
            raise ProtocolError("invalid", f"trajectory_hash: {i!r} is not a lowercase event id")
    return hashlib.sha256(('["' + '","'.join(ids) + '"]' if ids else "[]").encode()).hexdigest()


@dataclass
class TrajectoryReport:
    """What a reader found: the ordered steps, the recomputed hash, and every problem."""

    session_id: str
    author: str
    session: TrajectorySession | None
    session_event: Event | None
    steps: list[TrajectoryStep]
    computed_hash: str
    claimed_hash: str | None
    expected_hash: str | None
    missing_seqs: list[int]
    problems: list[str]
    complete: bool

    @property
    def ok(self) -> bool:
        """No gap, no tampering, every hash that was given matches."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        s = self.session
        return {
            "session_id": self.session_id,
            "author": self.author,
            "ok": self.ok,
            "complete": self.complete,
            "computed_hash": self.computed_hash,
            "claimed_hash": self.claimed_hash,
            "expected_hash": self.expected_hash,
            "missing_seqs": self.missing_seqs,
            "problems": self.problems,
            "session": None
            if s is None
            else {
                "participants": s.participants,
                "repo": s.repo,
                "sha": s.sha,
                "model": s.model,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "total_events": s.total_events,
                "root": s.root,
                "event_id": self.session_event.id if self.session_event else None,
            },
            "events": [
                {
                    "seq": st.seq,
                    "id": st.event.id,
                    "type": st.type,
                    "created_at": st.event.created_at,
                    "payload": st.payload,
                }
                for st in self.steps
            ],
        }


def verify_trajectory(
    session_id: str,
    author: str,
    events: Iterable[Event],
    *,
    expected_hash: str | None = None,
) -> TrajectoryReport:
    """Rebuild a session from whatever events a reader got and check it.

    ``events`` may mix the 39230 (any version) and the 39231s, from several relays, with
    duplicates and foreign events. Flags: bad signatures, gaps in ``seq``, two events for one
    ``seq``, a broken ``e`` chain (a reordered or replaced event), events after
    ``session_end``, a count or hash that differs from the closing 39230 or from
    ``expected_hash`` (e.g. taken from a job result's ``trajectory_hash`` tag).
    """
    problems: list[str] = []
    sessions: list[Event] = []
    by_seq: dict[int, dict[str, TrajectoryStep]] = {}
    seen: set[str] = set()
    for ev in events:
        if ev.id in seen or ev.pubkey != author:
            continue
        seen.add(ev.id)
        if ev.kind == TRAJECTORY_SESSION and ev.d_tag == session_id:
            if not ev.verify():
                problems.append(f"session event {ev.id[:12]}: invalid id or signature")
                continue
            sessions.append(ev)
        elif ev.kind == TRAJECTORY_EVENT and ev.first_tag_value("session") == session_id:
            if not ev.verify():
                problems.append(f"event {ev.id[:12]}: invalid id or signature")
                continue
            try:
                step = TrajectoryStep.from_event(ev, session_id)
            except ProtocolError as exc:
                problems.append(f"event {ev.id[:12]}: {exc.reason}")
                continue
            by_seq.setdefault(step.seq, {})[ev.id] = step

    # the newest 39230 is authoritative (the closing one when the session ended)
    session_event = max(sessions, key=lambda e: (e.created_at, neg_id(e.id)), default=None)
    session: TrajectorySession | None = None
    if session_event is None:
        problems.append("session event (kind 39230) not found")
    else:
        try:
            session = TrajectorySession.from_event(session_event)
        except ProtocolError as exc:
            problems.append(f"session event: {exc.reason}")

    steps: list[TrajectoryStep] = []
    for seq in sorted(by_seq):
        variants = by_seq[seq]
        if len(variants) > 1:
            ids = ", ".join(sorted(i[:12] for i in variants))
            problems.append(f"seq {seq}: {len(variants)} different events ({ids}): tampering")
        steps.append(min(variants.values(), key=lambda s: s.event.id))
    present = [s.seq for s in steps]
    last = max(present, default=-1)
    if session is not None and session.total_events is not None:
        last = max(last, session.total_events - 1)
    missing, missing_count = _missing_seqs(present, last)
    if missing_count:
        more = f" (and {missing_count - len(missing)} more)" if missing_count > len(missing) else ""
        problems.append("missing events: seq " + ", ".join(map(str, missing)) + more)

    roots = {s.root for s in steps}
    root: str | None = (
        session.root
        if session and session.root
        else (session_event.id if session_event is not None else None)
    )
    if len(roots) > 1:
        problems.append("events name different roots: tampering or mixed sessions")
    elif steps and root is not None and roots != {root}:
        problems.append("events do not point to the session's root event")
    by_number = {s.seq: s for s in steps}
    for s in steps:
        if s.seq == 0:
            if s.previous is not None:
                problems.append("seq 0: must not reply to a previous event")
            continue
        before = by_number.get(s.seq - 1)
        if s.previous is None:
            problems.append(f"seq {s.seq}: no reply tag to seq {s.seq - 1}")
        elif before is not None and s.previous != before.event.id:
            problems.append(
                f"seq {s.seq}: does not follow seq {s.seq - 1} "
                "(broken chain: reordered or replaced event)"
            )

    ends = [s for s in steps if s.type == SESSION_END]
    complete = bool(ends)
    if ends and ends[0].seq != last:
        problems.append(f"events after session_end (seq {ends[0].seq})")

    computed = trajectory_hash(s.event.id for s in steps)
    claimed = session.trajectory_hash if session else None
    if (
        session is not None
        and session.total_events is not None
        and (session.total_events != len(steps))
    ):
        problems.append(f"session says {session.total_events} events, found {len(steps)}")
    if claimed is not None and claimed != computed:
        problems.append(
            f"trajectory_hash mismatch: session claims {claimed}, events hash to {computed}"
        )
    if expected_hash is not None and expected_hash != computed:
        problems.append(
            f"trajectory_hash mismatch: expected {expected_hash}, events hash to {computed}"
        )
    return TrajectoryReport(
        session_id,
        author,
        session,
        session_event,
        steps,
        computed,
        claimed,
        expected_hash,
        missing,
        problems,
        complete,
    )
