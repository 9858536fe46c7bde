"""NIP-SA ticks: a request (39210) when the agent wakes and a result (39211) when it is
done, each with its own ``d`` (the tick id)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import (
    TICK_REQUEST,
    TICK_RESULT,
)
from oa_node.nostr.nipsa.common import (
    TICK_STATUSES,
    TICK_TRIGGERS,
    check_identifier,
    check_pubkey,
    expect_kind,
    int_tag,
)


@dataclass(frozen=True)
class TickRequest:
    tick_id: str
    trigger: str
    runner: str
    trigger_event: str | None = None

    def to_template(
        self, created_at: int | None = None, expiration: int | None = None
    ) -> EventTemplate:
        check_identifier(self.tick_id, "tick id")
        if self.trigger not in TICK_TRIGGERS:
            raise ProtocolError("invalid", f"tick: trigger must be one of {TICK_TRIGGERS}")
        tags = [
            ["d", self.tick_id],
            ["runner", check_pubkey(self.runner, "tick runner")],
            ["trigger", self.trigger],
        ]
        if self.trigger_event:
            tags.append(["e", self.trigger_event])
        if expiration is not None:
            tags.append(["expiration", str(expiration)])
        return EventTemplate(TICK_REQUEST, "", tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> TickRequest:
        expect_kind(event, TICK_REQUEST, "tick request")
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
        check_identifier(self.tick_id, "tick id")
        if self.status not in TICK_STATUSES:
            raise ProtocolError("invalid", f"tick: status must be one of {TICK_STATUSES}")
        tags = [
            ["d", self.tick_id],
            ["request", self.request_id],
            ["e", self.request_id],
            ["runner", check_pubkey(self.runner, "tick runner")],
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
        expect_kind(event, TICK_RESULT, "tick result")
        status = event.first_tag_value("status") or ""
        if status not in TICK_STATUSES:
            raise ProtocolError("invalid", f"tick result: unknown status {status!r}")
        request = event.first_tag_value("request") or event.first_tag_value("e")
        if not request:
            raise ProtocolError("invalid", "tick result: missing the 'request' tag")
        duration = int_tag(event, "duration_ms", "tick result")
        if duration is None:  # the short name
            duration = int_tag(event, "duration", "tick result", default=0)
        trajectory = None
        for t in event.tags:
            if t[0] == "trajectory" and len(t) >= 3:
                trajectory = (t[1], t[2], event.first_tag_value("trajectory_hash") or "")
        return cls(
            event.d_tag,
            request,
            event.first_tag_value("runner") or event.pubkey,
            status,
            int_tag(event, "actions", "tick result", default=0) or 0,
            int_tag(event, "cost", "tick result", default=0) or 0,
            duration or 0,
            trajectory,
        )
