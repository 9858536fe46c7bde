"""NIP-SA agent goals (kind 39203, ``d goals``): public JSON ``{"goals": [...]}``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import (
    AGENT_GOALS,
)
from oa_node.nostr.nipsa.common import (
    GOALS_D,
    content_json,
    expect_kind,
)

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
        content_json({"goals": [g.to_dict() for g in goals]}),
        [["d", GOALS_D]],
        created_at,
    )


def parse_goals(event: Event) -> list[Goal]:
    """Goals from a 39203; accepts ``{"goals": [...]}`` and a bare array."""
    expect_kind(event, AGENT_GOALS, "goals")
    try:
        obj = json.loads(event.content) if event.content else {"goals": []}
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid", f"goals: content is not JSON: {exc}") from None
    items = obj.get("goals") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise ProtocolError("invalid", "goals: expected a list of goals")
    return [Goal.from_dict(g) for g in items]
