"""NIP-SA agent state (kind 39201, ``d state``): a NIP-44 envelope to the agent itself;
the highest ``state_version`` wins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import (
    AGENT_STATE,
)
from oa_node.nostr.nipsa.common import (
    STATE_D,
    expect_kind,
    int_tag,
    neg_id,
)


@dataclass(frozen=True)
class StateEnvelope:
    """A state event without its plaintext: the version and the NIP-44 payload."""

    version: int
    ciphertext: str
    event: Event

    @classmethod
    def from_event(cls, event: Event) -> StateEnvelope:
        expect_kind(event, AGENT_STATE, "state")
        if event.d_tag != STATE_D:
            raise ProtocolError("invalid", f"state: d tag must be {STATE_D!r}")
        if not any(t[0] == "encrypted" for t in event.tags):
            raise ProtocolError("invalid", "state: missing the 'encrypted' tag")
        version = int_tag(event, "state_version", "state")
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
        if best is None or (env.version, env.event.created_at, neg_id(env.event.id)) > (
            best.version,
            best.event.created_at,
            neg_id(best.event.id),
        ):
            best = env
    return best

