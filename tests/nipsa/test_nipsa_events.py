"""Pure NIP-SA rules: builders and parsers round-trip, the trajectory chain and hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from oa_node.canonical import canonical_json
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import TRAJECTORY_EVENT
from oa_node.nostr.nipsa import (
    AgentProfile,
    AgentSchedule,
    Goal,
    StateEnvelope,
    TickOutcome,
    TickRequest,
    TickResult,
    TrajectorySession,
    TrajectoryStep,
    Trigger,
    choose_state,
    goals_template,
    parse_goals,
    state_template,
    trajectory_event_template,
    trajectory_hash,
    verify_trajectory,
)
from oa_node.signer import LocalSigner

AGENT = LocalSigner.generate()
OTHER = LocalSigner.generate()


def sign(template: EventTemplate, signer: LocalSigner = AGENT) -> Event:
    return signer.sign_now(template)


def test_profile_round_trip_with_frost_identity() -> None:
    signers = [LocalSigner.generate().public_key for _ in range(3)]
    p = AgentProfile("scout", "indexes repos", ["oa.repo_index.v1"], "autonomous", "0.1",
                     threshold=(2, 3), signers=signers, operator=OTHER.public_key,
                     lud16="scout@example.com")
    ev = sign(p.to_template())
    assert ev.kind == 39200 and ev.d_tag == "profile"
    assert ["threshold", "2", "3"] in ev.tags
    assert AgentProfile.from_event(ev) == p


def test_profile_rejects_bad_values() -> None:
    with pytest.raises(ProtocolError, match="autonomy_level"):
        AgentProfile("x", autonomy_level="wild").to_template()
    with pytest.raises(ProtocolError, match="threshold"):
        AgentProfile("x", threshold=(3, 2)).to_template()
    ev = sign(EventTemplate(39200, "[1]", [["d", "profile"]]))
    with pytest.raises(ProtocolError, match="JSON object"):
        AgentProfile.from_event(ev)


def test_schedule_round_trip_and_trigger_forms() -> None:
    s = AgentSchedule(900, 1_700_000_900, True,
                      [Trigger.parse("mention"), Trigger.parse("dm"), Trigger.parse("zap"),
                       Trigger.parse("kind:5050")])
    ev = sign(s.to_template())
    # a kind trigger goes on the wire in OpenAgents' form; both forms parse
    assert ["trigger", "custom:5050"] in ev.tags
    assert Trigger.parse("custom:5050") == Trigger("kind", 5050)
    assert AgentSchedule.from_event(ev) == s
    # a trigger type we do not know (another implementation's) is skipped
    ev2 = sign(EventTemplate(39202, "", [*ev.tags, ["trigger", "price_above:100"]]))
    assert AgentSchedule.from_event(ev2) == s
    with pytest.raises(ProtocolError, match="trigger"):
        Trigger.parse("kind:-1")
    with pytest.raises(ProtocolError, match="heartbeat"):
        AgentSchedule(0).to_template()


def test_goals_round_trip_and_bare_array() -> None:
    goals = [Goal("g1", "ship the relay", 1, 10, "active", 0.5),
             Goal("g2", "audit", 2, 11, "completed", 1.0)]
    ev = sign(goals_template(goals))
    assert ev.d_tag == "goals"
    assert parse_goals(ev) == goals
    bare = sign(EventTemplate(39203, json.dumps([g.to_dict() for g in goals]),
                              [["d", "goals"]]))
    assert parse_goals(bare) == goals
    bad = sign(EventTemplate(39203, '{"goals":[{"id":"x","description":"y","status":"?"}]}'))
    with pytest.raises(ProtocolError, match="status"):
        parse_goals(bad)


def test_state_choice_prefers_version_over_time() -> None:
    old_but_newer_version = sign(state_template("c2", 2, created_at=1000))
    newer_time_stale = sign(state_template("c1", 1, created_at=2000))
    foreign = sign(state_template("cx", 9, created_at=3000), OTHER)
    chosen = choose_state([newer_time_stale, old_but_newer_version, foreign], AGENT.public_key)
    assert chosen is not None and chosen.version == 2 and chosen.ciphertext == "c2"
    env = StateEnvelope.from_event(old_but_newer_version)
    assert ["encrypted"] in env.event.tags
    with pytest.raises(ProtocolError, match="state_version"):
        StateEnvelope.from_event(sign(EventTemplate(39201, "c", [["d", "state"], ["encrypted"]])))


def test_tick_events_round_trip_with_unique_d() -> None:
    req = TickRequest("t1", "mention", AGENT.public_key, "ab" * 32)
    rev = sign(req.to_template(expiration=2_000_000_000))
    assert rev.d_tag == "t1" and rev.expiration == 2_000_000_000
    assert TickRequest.from_event(rev) == req
    res = TickResult("t1", rev.id, AGENT.public_key, "success", 2, 150, 42,
                     ("sess", "ws://127.0.0.1:1", "cd" * 32))
    ev = sign(res.to_template("ciphertext"))
    assert ["trajectory", "sess", "ws://127.0.0.1:1"] in ev.tags
    assert ["trajectory_hash", "cd" * 32] in ev.tags
    assert TickResult.from_event(ev) == res
    with pytest.raises(ProtocolError, match="trigger"):
        TickRequest("t2", "whim", AGENT.public_key).to_template()


def test_tick_outcome_coercion() -> None:
    assert TickOutcome.coerce(None) == TickOutcome()
    out = TickOutcome.coerce({"actions": [{"type": "post"}], "cost_msat": 5})
    assert out.actions == [{"type": "post"}] and out.cost_msat == 5
    for bad in ({"status": "meh"}, {"cost_msat": -1}, {"colour": "red"}, 42):
        with pytest.raises(ProtocolError):
            TickOutcome.coerce(bad)


# --- trajectories -------------------------------------------------------------------------

SID = "sess-1"


def build_session(n_steps: int = 4, *, end: bool = True,
                  signer: LocalSigner = AGENT) -> tuple[Event, list[Event], Event | None]:
    """A start 39230, its 39231 chain (last one session_end), and the closing 39230."""
    start = sign(TrajectorySession(SID, 1000, [OTHER.public_key], "https://git.example/r",
                                   "ab" * 20).to_template(created_at=1000), signer)
    events: list[Event] = []
    types = ["tool_start", "tool_progress", "observation", "thinking", "agent"]
    for seq in range(n_steps):
        kind = "session_end" if end and seq == n_steps - 1 else types[seq % len(types)]
        events.append(sign(trajectory_event_template(
            pubkey=signer.public_key, session_id=SID, root=start.id, seq=seq,
            previous=events[-1].id if events else None, type=kind, payload={"n": seq},
            created_at=1000 + seq), signer))
    closing = None
    if end:
        s = TrajectorySession(SID, 1000, [OTHER.public_key], "https://git.example/r",
                              "ab" * 20, ended_at=1100, total_events=n_steps,
                              trajectory_hash=trajectory_hash(e.id for e in events),
                              root=start.id)
        closing = sign(s.to_template(created_at=1100), signer)
    return start, events, closing


def test_hash_rule_is_sha256_of_compact_json_id_array() -> None:
    ids = ["0" * 64, "f" * 64]
    expected = hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()
    assert trajectory_hash(ids) == expected
    assert trajectory_hash([]) == hashlib.sha256(b"[]").hexdigest()
    with pytest.raises(ProtocolError):
        trajectory_hash(["F" * 64])


def test_content_is_the_one_canonical_form_and_big_integers_are_refused() -> None:
    # oa_node.canonical (JCS): 1.0 -> 1, keys by UTF-16 code units (U+1F600 before U+FF61)
    payload = {"\uff61": 1.0, "\U0001f600": [1e21, 0.5]}
    t = trajectory_event_template(pubkey=AGENT.public_key, session_id=SID, root="a" * 64,
                                  seq=0, previous=None, type="agent", payload=payload)
    assert t.content == canonical_json({"type": "agent", **payload})
    assert t.content.endswith('"\U0001f600":[1e+21,0.5],"\uff61":1}')
    with pytest.raises(ProtocolError, match="2\\*\\*53"):  # rounded by any double reader
        trajectory_event_template(pubkey=AGENT.public_key, session_id=SID, root="a" * 64,
                                  seq=0, previous=None, type="agent", payload={"n": 2**53 + 1})


def test_trajectory_event_shape() -> None:
    start, events, _ = build_session(3)
    ev = events[1]
    assert ev.kind == TRAJECTORY_EVENT
    assert ev.d_tag == f"{SID}:1"
    assert ["a", f"39230:{AGENT.public_key}:{SID}"] in ev.tags
    assert ["e", start.id, "", "root"] in ev.tags
    assert ["e", events[0].id, "", "reply"] in ev.tags
    step = TrajectoryStep.from_event(ev, SID)
    assert (step.seq, step.type, step.payload) == (1, "tool_progress", {"n": 1})
    assert len({e.d_tag for e in events}) == len(events)
    with pytest.raises(ProtocolError, match="type"):
        trajectory_event_template(pubkey=AGENT.public_key, session_id=SID, root=start.id,
                                  seq=0, previous=None, type="dance")
    with pytest.raises(ProtocolError, match="previous"):
        trajectory_event_template(pubkey=AGENT.public_key, session_id=SID, root=start.id,
                                  seq=2, previous=None, type="agent")


def test_complete_session_verifies_from_any_order_and_duplicates() -> None:
    start, events, closing = build_session(5)
    assert closing is not None
    mixed = [events[3], closing, events[0], start, events[4], events[1], events[2], events[1]]
    report = verify_trajectory(SID, AGENT.public_key, mixed)
    assert report.ok, report.problems
    assert report.complete
    assert [s.seq for s in report.steps] == [0, 1, 2, 3, 4]
    assert report.computed_hash == report.claimed_hash
    assert report.to_dict()["events"][4]["type"] == "session_end"


def test_missing_event_is_a_gap_and_breaks_the_hash() -> None:
    start, events, closing = build_session(5)
    report = verify_trajectory(SID, AGENT.public_key, [start, closing, *events[:2], *events[3:]])
    assert not report.ok
    assert report.missing_seqs == [2]
    assert any("missing events: seq 2" in p for p in report.problems)
    assert any("trajectory_hash mismatch" in p for p in report.problems)


def test_missing_tail_is_found_through_total_events() -> None:
    start, events, closing = build_session(5)
    report = verify_trajectory(SID, AGENT.public_key, [start, closing, *events[:3]])
    assert report.missing_seqs == [3, 4]


def test_reordered_events_break_the_chain() -> None:
    """The agent re-signs two steps with swapped positions: seq tags stay contiguous, but
    the reply chain and the hash give it away."""
    start, events, closing = build_session(5)
    swapped: list[Event] = list(events)
    for seq, source in ((1, events[2]), (2, events[1])):
        payload = json.loads(source.content)
        kind = payload.pop("type")
        swapped[seq] = sign(trajectory_event_template(
            pubkey=AGENT.public_key, session_id=SID, root=start.id, seq=seq,
            previous=swapped[seq - 1].id, type=kind, payload=payload, created_at=1000 + seq))
    report = verify_trajectory(SID, AGENT.public_key, [start, closing, *swapped])
    assert not report.ok
    assert any("seq 3: does not follow seq 2" in p for p in report.problems)
    assert any("trajectory_hash mismatch" in p for p in report.problems)


def test_two_events_for_one_seq_is_tampering() -> None:
    start, events, closing = build_session(4)
    forged = sign(trajectory_event_template(
        pubkey=AGENT.public_key, session_id=SID, root=start.id, seq=1,
        previous=events[0].id, type="agent", payload={"n": "forged"}))
    report = verify_trajectory(SID, AGENT.public_key, [start, closing, *events, forged])
    assert any("seq 1: 2 different events" in p for p in report.problems)


def test_expected_hash_from_elsewhere_is_checked() -> None:
    start, events, closing = build_session(3)
    good = trajectory_hash(e.id for e in events)
    assert verify_trajectory(SID, AGENT.public_key, [start, closing, *events],
                             expected_hash=good).ok
    bad = verify_trajectory(SID, AGENT.public_key, [start, closing, *events],
                            expected_hash="00" * 32)
    assert any("expected" in p for p in bad.problems)


def test_foreign_and_forged_events() -> None:
    start, events, closing = build_session(3)
    # another author's events are not part of this agent's session
    _, foreign, _ = build_session(3, signer=OTHER)
    report = verify_trajectory(SID, AGENT.public_key, [start, closing, *events, *foreign])
    assert report.ok and len(report.steps) == 3
    # a bad signature is flagged, not trusted
    broken = Event(events[1].id, events[1].pubkey, events[1].created_at, events[1].kind,
                   events[1].tags, events[1].content.replace("1", "9"), events[1].sig)
    report = verify_trajectory(SID, AGENT.public_key, [start, closing, events[0], broken,
                                                      events[2]])
    assert any("invalid id or signature" in p for p in report.problems)
    assert report.missing_seqs == [1]


def test_open_session_without_hash_is_ok_but_incomplete() -> None:
    start, events, _ = build_session(3, end=False)
    report = verify_trajectory(SID, AGENT.public_key, [start, *events])
    assert report.ok and not report.complete and report.claimed_hash is None


def test_events_after_session_end() -> None:
    start, events, _ = build_session(3)
    extra = sign(trajectory_event_template(
        pubkey=AGENT.public_key, session_id=SID, root=start.id, seq=3,
        previous=events[-1].id, type="agent"))
    report = verify_trajectory(SID, AGENT.public_key, [start, *events, extra])
    assert any("after session_end" in p for p in report.problems)
