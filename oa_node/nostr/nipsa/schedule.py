"""NIP-SA agent schedule (kind 39202, ``d schedule``): heartbeat, next tick, triggers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import (
    AGENT_SCHEDULE,
)
from oa_node.nostr.nipsa.common import (
    SCHEDULE_D,
    expect_kind,
    int_tag,
)

_KIND_NUMBER = re.compile(r"[0-9]{1,5}")


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
        expect_kind(event, AGENT_SCHEDULE, "schedule")
        active_raw = event.first_tag_value("active")
        if active_raw not in (None, "true", "false"):
            raise ProtocolError("invalid", "schedule: active must be true or false")
        heartbeat = int_tag(event, "heartbeat", "schedule")
        if heartbeat == 0:
            raise ProtocolError("invalid", "schedule: heartbeat must be > 0 seconds")
        return cls(
            heartbeat=heartbeat,
            next_tick=int_tag(event, "next_tick", "schedule"),
            active=active_raw != "false",
            triggers=[t for t in map(_maybe_trigger, event.tag_values("trigger")) if t],
        )
