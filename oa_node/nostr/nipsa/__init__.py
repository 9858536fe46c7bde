"""NIP-SA (sovereign agents): event builders, parsers and the trajectory verification rule.

One module per event family (:mod:`.profile`, :mod:`.state`, :mod:`.schedule`,
:mod:`.goals`, :mod:`.ticks`, :mod:`.trajectory`; shared pieces in :mod:`.common`); this
package re-exports their public names.

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
from oa_node.nostr.nipsa.common import (
    AUTONOMY_LEVELS,
    GOALS_D,
    MAX_LISTED_MISSING,
    PROFILE_D,
    SCHEDULE_D,
    SESSION_END,
    STATE_D,
    TICK_STATUSES,
    TICK_TRIGGERS,
    TRAJECTORY_EVENT_TYPES,
    content_json,
)
from oa_node.nostr.nipsa.goals import GOAL_STATUSES, Goal, goals_template, parse_goals
from oa_node.nostr.nipsa.profile import AgentProfile
from oa_node.nostr.nipsa.schedule import AgentSchedule, Trigger
from oa_node.nostr.nipsa.state import StateEnvelope, choose_state, state_template
from oa_node.nostr.nipsa.ticks import TickOutcome, TickRequest, TickResult
from oa_node.nostr.nipsa.trajectory import (
    TrajectoryReport,
    TrajectorySession,
    TrajectoryStep,
    session_coordinate,
    trajectory_event_template,
    trajectory_hash,
    verify_trajectory,
)

__all__ = [
    "AGENT_GOALS",
    "AGENT_PROFILE",
    "AGENT_SCHEDULE",
    "AGENT_STATE",
    "AUTONOMY_LEVELS",
    "GOALS_D",
    "GOAL_STATUSES",
    "MAX_LISTED_MISSING",
    "PROFILE_D",
    "SCHEDULE_D",
    "SESSION_END",
    "STATE_D",
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
    "choose_state",
    "content_json",
    "goals_template",
    "parse_goals",
    "session_coordinate",
    "state_template",
    "trajectory_event_template",
    "trajectory_hash",
    "verify_trajectory",
]
