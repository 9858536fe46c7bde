"""Hostile NIP-SA events: each is a clear ProtocolError or a bounded report, never a crash
or a reader that hangs on a number a stranger chose."""

from __future__ import annotations

import pytest

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.nipsa import (
    MAX_LISTED_MISSING,
    AgentSchedule,
    Goal,
    TrajectorySession,
    Trigger,
    parse_goals,
    trajectory_event_template,
    verify_trajectory,
)
from oa_node.signer import LocalSigner

AGENT = LocalSigner.generate()
SID = "hostile"


def sign(template: EventTemplate) -> Event:
    return AGENT.sign_now(template)


@pytest.mark.parametrize("text", ["kind:²", "custom:٣", "kind:" + "9" * 5000, "kind:-1",
                                  "kind:65536", "kind: 1", "kind:1_0"])
def test_trigger_with_non_ascii_or_huge_number_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError, match="trigger"):
        Trigger.parse(text)


def test_schedule_skips_a_hostile_trigger() -> None:
    ev = sign(EventTemplate(39202, "", [["d", "schedule"], ["trigger", "kind:²"],
                                        ["trigger", "custom:7"]]))
    assert AgentSchedule.from_event(ev).triggers == [Trigger("kind", 7)]


@pytest.mark.parametrize("field", ["priority", "created_at"])
def test_goal_with_infinite_number_is_a_protocol_error(field: str) -> None:
    with pytest.raises(ProtocolError, match="must be numbers"):
        Goal.from_dict({"id": "g", "description": "d", field: float("inf")})
    content = '{"goals":[{"id":"g","description":"d","' + field + '":1e999}]}'
    ev = sign(EventTemplate(39203, content, [["d", "goals"]]))
    with pytest.raises(ProtocolError, match="must be numbers"):
        parse_goals(ev)


def _session(total_events: int | None, seq: int) -> list[Event]:
    start = sign(TrajectorySession(SID, 1000).to_template(created_at=1000))
    first = sign(trajectory_event_template(pubkey=AGENT.public_key, session_id=SID,
                                           root=start.id, seq=0, previous=None, type="agent"))
    far = sign(trajectory_event_template(pubkey=AGENT.public_key, session_id=SID,
                                         root=start.id, seq=seq, previous=first.id,
                                         type="agent"))
    out = [start, first, far]
    if total_events is not None:
        closing = TrajectorySession(SID, 1000, ended_at=1001, total_events=total_events,
                                    trajectory_hash="00" * 32, root=start.id)
        out.append(sign(closing.to_template(created_at=1001)))
    return out


@pytest.mark.parametrize(("total", "seq"), [(None, 10**15), (10**15, 1), (None, 5)])
def test_huge_seq_or_total_events_gives_a_bounded_report(total: int | None, seq: int) -> None:
    report = verify_trajectory(SID, AGENT.public_key, _session(total, seq))
    assert not report.ok
    last = max(seq, (total or 0) - 1)
    expected = list(range(1, min(seq, MAX_LISTED_MISSING + 1)))
    if total is not None:
        expected = list(range(2, MAX_LISTED_MISSING + 2))
    assert report.missing_seqs == expected
    problem = next(p for p in report.problems if p.startswith("missing events"))
    absent = last + 1 - 2
    if absent > len(expected):
        assert problem.endswith(f"(and {absent - len(expected)} more)")
    else:
        assert "more" not in problem
