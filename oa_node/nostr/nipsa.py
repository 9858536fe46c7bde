"""NIP-SA (sovereign agents): event builders, parsers and the trajectory verification rule.

Pure and synchronous: builders return :class:`EventTemplate` objects for a signer, parsers
take received :class:`Event` objects and raise :class:`ProtocolError` on malformed input.
Field and tag names follow OpenAgents' NIP-SA draft (``crates/nostr/core/src/nip_sa``) where
it defines them; oa-node's additions are marked below.

Kinds (all in NIP-01's addressable range 30000-39999, so a relay keeps only the newest
event per ``(pubkey, kind, d)``; every tick and trajectory event therefore gets its own
``d`` so none replaces another):

=====  =====================  ==========================================================
39200  agent profile          ``d profile``; JSON content; ``threshold k n``, ``signer``,
                              ``operator``, ``lud16`` tags
39201  agent state            ``d state``; NIP-44 v2 to the agent itself; ``encrypted``,
                              ``state_version N`` (oa-node: a counter, newer wins)
39202  agent schedule         ``d schedule``; ``heartbeat``, ``next_tick``, ``active``,
                              ``trigger mention|dm|zap|custom:<kind>``
39203  agent goals            ``d goals``; public JSON ``{"goals": [...]}``
39210  tick request           ``d <tick id>``, ``runner``, ``trigger`` (+ ``e`` of the
                              triggering event)
39211  tick result            ``d <tick id>``, ``request``/``e`` (the 39210 id), ``runner``,
                              ``status``, ``actions``, ``cost`` (msat), ``duration_ms``,
                              ``encrypted`` summary (NIP-44 to self)
39230  trajectory session     ``d <session>``, ``p`` participants, ``repo``, ``sha``,
                              ``started_at``; the closing version adds ``ended_at``,
                              ``total_events``, ``trajectory_hash`` and ``root``
39231  trajectory event       ``d <session>:<seq>``, ``a 39230:<pubkey>:<session>``,
                              ``e <root> "" root``, ``e <previous> "" reply``, ``session``,
                              ``seq``, ``step <type>``; content ``{"type": ..., ...payload}``
=====  =====================  ==========================================================

Trajectory sessions
-------------------
A session starts with a 39230 event; its id is the session's *root*. Events are numbered
``seq = 0, 1, 2, ...`` with no gaps. Event 0 carries ``["e", root, "", "root"]``; every
later event also carries ``["e", <id of event seq-1>, "", "reply"]``, so each event commits
to the whole history before it: an event moved, dropped or replaced breaks the chain. The
recorder's last event has type ``session_end``; it then republishes the 39230 (same ``d``)
with ``["root", <root id>]``, ``["total_events", n]`` and ``["trajectory_hash", h]``.

The trajectory_hash rule
------------------------
``trajectory_hash`` is the lowercase hex SHA-256 of the UTF-8 bytes of the compact JSON
array of the session's 39231 event ids (lowercase hex) ordered by ``seq`` ascending, with
every event of the session included (``session_end`` too)::

    trajectory_hash = sha256('["<id seq 0>","<id seq 1>",...,"<id seq n-1>"]').hexdigest()

There are no spaces; a session without events hashes ``[]``. Since each id is the NIP-01
hash of its signed event, the hash pins the full content, order and authorship of the run;
anyone can recompute it from the events a relay returns for
``{"kinds": [39231], "authors": [<agent>], "#a": ["39230:<agent>:<session>"]}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex
from oa_node.nostr.kinds import (
    AGENT_GOALS,
    AGENT_PROFILE,
    AGENT_SCHEDULE,
    AGENT_STATE,
    TICK_REQUEST,
    TICK_RESULT,
    TRAJECTORY_EVENT,
    TRAJECTORY_SESSION,
)

__all__ = [
    "AGENT_GOALS",
    "AGENT_PROFILE",
    "AGENT_SCHEDULE",
    "AGENT_STATE",
    "AUTONOMY_LEVELS",
    "TICK_REQUEST",
    "TICK_RESULT",
    "TICK_STATUSES",
    "TICK_TRIGGERS",
    "TRAJECTORY_EVENT",
    "TRAJECTORY_EVENT_TYPES",
    "TRAJECTORY_SESSION",
    "AgentProfile",
    "AgentSchedule",
    "Goal",
    "StateEnvelope",
    "TickOutcome",
    "TickRequest",
    "TickResult",
    "TrajectoryReport",
    "TrajectorySession",
    "TrajectoryStep",
    "Trigger",
    "canonical_json",
    "choose_state",
    "goals_template",
    "parse_goals",
    "session_coordinate",
    "state_template",
    "trajectory_event_template",
    "trajectory_hash",
    "verify_trajectory",
]

PROFILE_D = "profile"
STATE_D = "state"
SCHEDULE_D = "schedule"
GOALS_D = "goals"

AUTONOMY_LEVELS = ("supervised", "bounded", "autonomous")
#: What can wake an agent: its heartbeat, a manual ``oa-node agent tick``, or a trigger.
TICK_TRIGGERS = ("heartbeat", "manual", "mention", "dm", "zap", "kind")
TICK_STATUSES = ("success", "failure", "timeout")
#: The documented payload types of a trajectory event (39231 ``step`` / content ``type``).
TRAJECTORY_EVENT_TYPES = frozenset(
    {
        "user",
        "agent",
        "tool",
        "tool_start",
        "tool_progress",
        "observation",
        "thinking",
        "subagent",
        "question",
        "todos",
        "phase",
        "session_end",
    }
)
SESSION_END = "session_end"

_MAX_ID_LEN = 128
#: Most missing ``seq`` numbers a report lists: a hostile ``seq`` or ``total_events`` of
#: 10**12 must cost a reader a short list, not a set of that size.
MAX_LISTED_MISSING = 1000
_KIND_NUMBER = re.compile(r"[0-9]{1,5}")
_canonical = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def canonical_json(obj: Any) -> str:
    """Keys sorted, no whitespace, UTF-8 verbatim: one text per value (the JCS rule for the
    JSON oa-node produces)."""
    try:
        return _canonical(obj)
    except (TypeError, ValueError) as exc:
        raise ProtocolError("invalid", f"not JSON-serialisable: {exc}") from None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(text) if text else {}
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid", f"{what}: content is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("invalid", f"{what}: content must be a JSON object")
    return obj


def _expect_kind(event: Event, kind: int, what: str) -> None:
    if event.kind != kind:
        raise ProtocolError("invalid", f"{what}: expected kind {kind}, got {event.kind}")


def _int_tag(event: Event, name: str, what: str, *, default: int | None = None) -> int | None:
    raw = event.first_tag_value(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError("invalid", f"{what}: tag {name!r} must be an integer") from None
    if value < 0:
        raise ProtocolError("invalid", f"{what}: tag {name!r} must not be negative")
    return value


def _check_identifier(value: str, what: str) -> str:
    if not value or len(value) > _MAX_ID_LEN or any(c.isspace() or c == ":" for c in value):
        raise ProtocolError(
            "invalid", f"{what}: must be 1-{_MAX_ID_LEN} characters without spaces or ':'"
        )
    return value


def _check_pubkey(value: str, what: str) -> str:
    if not is_hex(value, 32):
        raise ProtocolError("invalid", f"{what}: expected a 64-hex public key")
    return value


# --- profile (39200) ----------------------------------------------------------------------


@dataclass
class AgentProfile:
    """Who the agent is; ``threshold``/``signers`` describe a FROST group identity."""

    name: str
    about: str = ""
    capabilities: list[str] = field(default_factory=list)
    autonomy_level: str = "bounded"
    version: str = ""
    picture: str | None = None
    threshold: tuple[int, int] | None = None
    signers: list[str] = field(default_factory=list)
    operator: str | None = None
    lud16: str | None = None

    def validate(self) -> None:
        if self.autonomy_level not in AUTONOMY_LEVELS:
            raise ProtocolError(
                "invalid", f"profile: autonomy_level must be one of {', '.join(AUTONOMY_LEVELS)}"
            )
        if self.threshold is not None:
            k, n = self.threshold
            if not 1 <= k <= n:
                raise ProtocolError("invalid", "profile: threshold must satisfy 1 <= k <= n")
        for pk in self.signers:
            _check_pubkey(pk, "profile signer")
        if self.operator is not None:
            _check_pubkey(self.operator, "profile operator")

    def to_template(self, created_at: int | None = None) -> EventTemplate:
        self.validate()
        content: dict[str, Any] = {
            "name": self.name,
            "about": self.about,
            "capabilities": list(self.capabilities),
            "autonomy_level": self.autonomy_level,
            "version": self.version,
        }
        if self.picture:
            content["picture"] = self.picture
        tags: list[list[str]] = [["d", PROFILE_D]]
        if self.threshold is not None:
            tags.append(["threshold", str(self.threshold[0]), str(self.threshold[1])])
        tags += [["signer", pk] for pk in self.signers]
        if self.operator:
            tags.append(["operator", self.operator])
        if self.lud16:
            tags.append(["lud16", self.lud16])
        return EventTemplate(AGENT_PROFILE, canonical_json(content), tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> AgentProfile:
        _expect_kind(event, AGENT_PROFILE, "profile")
        c = _json_object(event.content, "profile")
        threshold: tuple[int, int] | None = None
        for t in event.tags:
            if t[0] == "threshold":
                try:
                    threshold = (int(t[1]), int(t[2]))
                except (IndexError, ValueError):
                    raise ProtocolError("invalid", "profile: threshold tag is k n") from None
        caps = c.get("capabilities", [])
        if not isinstance(caps, list) or not all(isinstance(x, str) for x in caps):
            raise ProtocolError("invalid", "profile: capabilities must be a list of strings")
        profile = cls(
            name=str(c.get("name", "")),
            about=str(c.get("about", "")),
            capabilities=caps,
            autonomy_level=str(c.get("autonomy_level", "bounded")),
            version=str(c.get("version", "")),
            picture=c.get("picture") if isinstance(c.get("picture"), str) else None,
            threshold=threshold,
            signers=event.tag_values("signer"),
            operator=event.first_tag_value("operator"),
            lud16=event.first_tag_value("lud16"),
        )
        profile.validate()
        return profile


# --- state (39201) ------------------------------------------------------------------------


@dataclass(frozen=True)
class StateEnvelope:
    """A state event without its plaintext: the version and the NIP-44 payload."""

    version: int
    ciphertext: str
    event: Event

    @classmethod
    def from_event(cls, event: Event) -> StateEnvelope:
        _expect_kind(event, AGENT_STATE, "state")
        if event.d_tag != STATE_D:
            raise ProtocolError("invalid", f"state: d tag must be {STATE_D!r}")
        if not any(t[0] == "encrypted" for t in event.tags):
            raise ProtocolError("invalid", "state: missing the 'encrypted' tag")
        version = _int_tag(event, "state_version", "state")
        if version is None:
            raise ProtocolError("invalid", "state: missing the 'state_version' tag")
        return cls(version, event.content, event)


def state_template(ciphertext: str, version: int, created_at: int | None = None) -> EventTemplate:
    """The 39201 carrying ``ciphertext`` (state JSON NIP-44-encrypted to the agent)."""
    if version < 1:
        raise ProtocolError("invalid", "state: state_version starts at 1")
    return EventTemplate(
        AGENT_STATE,
        ciphertext,
        [["d", STATE_D], ["encrypted"], ["state_version", str(version)]],
        created_at,
    )


def choose_state(events: Iterable[Event], author: str) -> StateEnvelope | None:
    """The authoritative state among copies from several relays: highest ``state_version``,
    then newest ``created_at``, then lowest id (NIP-01's tie rule). Foreign or malformed
    events are ignored."""
    best: StateEnvelope | None = None
    for ev in events:
        if ev.pubkey != author:
            continue
        try:
            env = StateEnvelope.from_event(ev)
        except ProtocolError:
            continue
        if best is None or (env.version, env.event.created_at, _neg_id(env.event.id)) > (
            best.version,
            best.event.created_at,
            _neg_id(best.event.id),
        ):
            best = env
    return best


def _neg_id(event_id: str) -> bytes:
    return bytes(255 - b for b in bytes.fromhex(event_id))


# --- schedule (39202) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """What wakes the agent besides its heartbeat; ``kind`` only for ``type == "kind"``."""

    type: str
    kind: int | None = None

    @classmethod
    def parse(cls, text: str) -> Trigger:
        """``mention``, ``dm``, ``zap``, ``kind:<n>`` (or OpenAgents' ``custom:<n>``)."""
        text = text.strip()
        if text in ("mention", "dm", "zap"):
            return cls(text)
        prefix, _, num = text.partition(":")
        if prefix in ("kind", "custom") and _KIND_NUMBER.fullmatch(num) and int(num) <= 65535:
            return cls("kind", int(num))
        raise ProtocolError(
            "invalid", f"trigger {text!r}: expected mention, dm, zap or kind:<0-65535>"
        )

    def tag_value(self) -> str:
        # OpenAgents' wire form for a kind trigger is "custom:<kind>"; we read both.
        return f"custom:{self.kind}" if self.type == "kind" else self.type

    def __str__(self) -> str:
        return f"kind:{self.kind}" if self.type == "kind" else self.type


def _maybe_trigger(text: str) -> Trigger | None:
    """Triggers another implementation defines (and we do not) are skipped, not fatal."""
    try:
        return Trigger.parse(text)
    except ProtocolError:
        return None


@dataclass
class AgentSchedule:
    heartbeat: int | None = None
    next_tick: int | None = None
    active: bool = True
    triggers: list[Trigger] = field(default_factory=list)

    def to_template(self, created_at: int | None = None) -> EventTemplate:
        if self.heartbeat is not None and self.heartbeat <= 0:
            raise ProtocolError("invalid", "schedule: heartbeat must be > 0 seconds")
        tags: list[list[str]] = [["d", SCHEDULE_D], ["active", "true" if self.active else "false"]]
        if self.heartbeat is not None:
            tags.append(["heartbeat", str(self.heartbeat)])
        if self.next_tick is not None:
            tags.append(["next_tick", str(self.next_tick)])
        tags += [["trigger", t.tag_value()] for t in self.triggers]
        return EventTemplate(AGENT_SCHEDULE, "", tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> AgentSchedule:
        _expect_kind(event, AGENT_SCHEDULE, "schedule")
        active_raw = event.first_tag_value("active")
        if active_raw not in (None, "true", "false"):
            raise ProtocolError("invalid", "schedule: active must be true or false")
        heartbeat = _int_tag(event, "heartbeat", "schedule")
        if heartbeat == 0:
            raise ProtocolError("invalid", "schedule: heartbeat must be > 0 seconds")
        return cls(
            heartbeat=heartbeat,
            next_tick=_int_tag(event, "next_tick", "schedule"),
            active=active_raw != "false",
            triggers=[t for t in map(_maybe_trigger, event.tag_values("trigger")) if t],
        )


# --- goals (39203) ------------------------------------------------------------------------

GOAL_STATUSES = ("active", "paused", "completed", "cancelled")


@dataclass
class Goal:
    id: str
    description: str
    priority: int = 1
    created_at: int = 0
    status: str = "active"
    progress: float = 0.0

    @classmethod
    def from_dict(cls, obj: Any) -> Goal:
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("id"), str)
            or not isinstance(obj.get("description"), str)
        ):
            raise ProtocolError("invalid", "goal: needs string 'id' and 'description'")
        status = obj.get("status", "active")
        if status not in GOAL_STATUSES:
            raise ProtocolError(
                "invalid", f"goal {obj['id']}: status must be one of {', '.join(GOAL_STATUSES)}"
            )
        try:
            priority = int(obj.get("priority", 1))
            created_at = int(obj.get("created_at", 0))
            progress = float(obj.get("progress", 0.0))
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
            raise ProtocolError(
                "invalid", f"goal {obj['id']}: priority, created_at and progress must be numbers"
            ) from None
        if not 0.0 <= progress <= 1.0:
            raise ProtocolError("invalid", f"goal {obj['id']}: progress must be 0..1")
        return cls(obj["id"], obj["description"], priority, created_at, status, progress)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "priority": self.priority,
            "created_at": self.created_at,
            "status": self.status,
            "progress": self.progress,
        }


def goals_template(goals: Sequence[Goal], created_at: int | None = None) -> EventTemplate:
    return EventTemplate(
        AGENT_GOALS,
        canonical_json({"goals": [g.to_dict() for g in goals]}),
        [["d", GOALS_D]],
        created_at,
    )


def parse_goals(event: Event) -> list[Goal]:
    """Goals from a 39203; accepts ``{"goals": [...]}`` and a bare array."""
    _expect_kind(event, AGENT_GOALS, "goals")
    try:
        obj = json.loads(event.content) if event.content else {"goals": []}
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid", f"goals: content is not JSON: {exc}") from None
    items = obj.get("goals") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise ProtocolError("invalid", "goals: expected a list of goals")
    return [Goal.from_dict(g) for g in items]


# --- ticks (39210 / 39211) ----------------------------------------------------------------


@dataclass(frozen=True)
class TickRequest:
    tick_id: str
    trigger: str
    runner: str
    trigger_event: str | None = None

    def to_template(
        self, created_at: int | None = None, expiration: int | None = None
    ) -> EventTemplate:
        _check_identifier(self.tick_id, "tick id")
        if self.trigger not in TICK_TRIGGERS:
            raise ProtocolError("invalid", f"tick: trigger must be one of {TICK_TRIGGERS}")
        tags = [
            ["d", self.tick_id],
            ["runner", _check_pubkey(self.runner, "tick runner")],
            ["trigger", self.trigger],
        ]
        if self.trigger_event:
            tags.append(["e", self.trigger_event])
        if expiration is not None:
            tags.append(["expiration", str(expiration)])
        return EventTemplate(TICK_REQUEST, "", tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> TickRequest:
        _expect_kind(event, TICK_REQUEST, "tick request")
        trigger = event.first_tag_value("trigger") or ""
        if trigger not in TICK_TRIGGERS:
            raise ProtocolError("invalid", f"tick request: unknown trigger {trigger!r}")
        return cls(
            event.d_tag,
            trigger,
            event.first_tag_value("runner") or event.pubkey,
            event.first_tag_value("e"),
        )


@dataclass
class TickOutcome:
    """What a tick handler reports (also accepted as a dict with these keys, or None).

    ``actions`` are small JSON objects (``{"type": "post", "id": ...}``); ``cost_msat`` is
    what the tick spent; ``summary`` is private (it goes encrypted into the 39211)."""

    status: str = "success"
    actions: list[dict[str, Any]] = field(default_factory=list)
    cost_msat: int = 0
    summary: Any = None
    #: the session this tick recorded: a ``TrajectoryRef`` or (session id, relay, hash)
    trajectory: Any = None

    @classmethod
    def coerce(cls, value: Any) -> TickOutcome:
        if value is None:
            return cls()
        if isinstance(value, cls):
            out = value
        elif isinstance(value, Mapping):
            unknown = set(value) - {"status", "actions", "cost_msat", "summary", "trajectory"}
            if unknown:
                raise ProtocolError("invalid", f"tick outcome: unknown keys {sorted(unknown)}")
            out = cls(**value)
        else:
            raise ProtocolError(
                "invalid",
                f"tick outcome must be a TickOutcome, a dict or None, not {type(value).__name__}",
            )
        ref = out.trajectory
        if ref is not None and not isinstance(ref, tuple):  # a TrajectoryRef
            try:
                out.trajectory = (ref.session_id, ref.relay, ref.trajectory_hash)
            except AttributeError:
                raise ProtocolError(
                    "invalid",
                    "tick outcome: trajectory must be a TrajectoryRef or (session, relay, hash)",
                ) from None
        if out.status not in TICK_STATUSES:
            raise ProtocolError("invalid", f"tick outcome: status must be one of {TICK_STATUSES}")
        if not isinstance(out.cost_msat, int) or out.cost_msat < 0:
            raise ProtocolError("invalid", "tick outcome: cost_msat must be an integer >= 0")
        if not isinstance(out.actions, list) or not all(isinstance(a, dict) for a in out.actions):
            raise ProtocolError("invalid", "tick outcome: actions must be a list of objects")
        return out


@dataclass(frozen=True)
class TickResult:
    tick_id: str
    request_id: str
    runner: str
    status: str
    actions: int
    cost_msat: int
    duration_ms: int
    trajectory: tuple[str, str, str] | None = None

    def to_template(
        self, encrypted_summary: str, created_at: int | None = None, expiration: int | None = None
    ) -> EventTemplate:
        _check_identifier(self.tick_id, "tick id")
        if self.status not in TICK_STATUSES:
            raise ProtocolError("invalid", f"tick: status must be one of {TICK_STATUSES}")
        tags = [
            ["d", self.tick_id],
            ["request", self.request_id],
            ["e", self.request_id],
            ["runner", _check_pubkey(self.runner, "tick runner")],
            ["status", self.status],
            ["actions", str(self.actions)],
            ["cost", str(self.cost_msat)],
            ["duration_ms", str(self.duration_ms)],
            ["encrypted"],
        ]
        if self.trajectory is not None:
            session, relay, digest = self.trajectory
            tags += [["trajectory", session, relay], ["trajectory_hash", digest]]
        if expiration is not None:
            tags.append(["expiration", str(expiration)])
        return EventTemplate(TICK_RESULT, encrypted_summary, tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> TickResult:
        _expect_kind(event, TICK_RESULT, "tick result")
        status = event.first_tag_value("status") or ""
        if status not in TICK_STATUSES:
            raise ProtocolError("invalid", f"tick result: unknown status {status!r}")
        request = event.first_tag_value("request") or event.first_tag_value("e")
        if not request:
            raise ProtocolError("invalid", "tick result: missing the 'request' tag")
        duration = _int_tag(event, "duration_ms", "tick result")
        if duration is None:  # the short name
            duration = _int_tag(event, "duration", "tick result", default=0)
        trajectory = None
        for t in event.tags:
            if t[0] == "trajectory" and len(t) >= 3:
                trajectory = (t[1], t[2], event.first_tag_value("trajectory_hash") or "")
        return cls(
            event.d_tag,
            request,
            event.first_tag_value("runner") or event.pubkey,
            status,
            _int_tag(event, "actions", "tick result", default=0) or 0,
            _int_tag(event, "cost", "tick result", default=0) or 0,
            duration or 0,
            trajectory,
        )


# --- trajectories (39230 / 39231) ---------------------------------------------------------


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
        _check_identifier(self.session_id, "session id")
        for p in self.participants:
            _check_pubkey(p, "session participant")
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
        return EventTemplate(TRAJECTORY_SESSION, canonical_json(content), tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> TrajectorySession:
        _expect_kind(event, TRAJECTORY_SESSION, "trajectory session")
        started = _int_tag(event, "started_at", "trajectory session", default=event.created_at)
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
            ended_at=_int_tag(event, "ended_at", "trajectory session"),
            total_events=_int_tag(event, "total_events", "trajectory session"),
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
    _check_identifier(session_id, "session id")
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
    return EventTemplate(TRAJECTORY_EVENT, canonical_json(body), tags, created_at)


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
        _expect_kind(event, TRAJECTORY_EVENT, "trajectory event")
        if event.first_tag_value("session") != session_id:
            raise ProtocolError("invalid", "trajectory event: belongs to another session")
        seq = _int_tag(event, "seq", "trajectory event")
        if seq is None:
            raise ProtocolError("invalid", "trajectory event: missing the 'seq' tag")
        if event.d_tag != f"{session_id}:{seq}":
            raise ProtocolError(
                "invalid",
                f"trajectory event: d tag {event.d_tag!r} does not "
                f"match session {session_id!r} seq {seq}",
            )
        body = _json_object(event.content, "trajectory event")
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
    session_event = max(sessions, key=lambda e: (e.created_at, _neg_id(e.id)), default=None)
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
