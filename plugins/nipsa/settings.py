"""The ``[nipsa]`` config section and the typed settings the agent runtime reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oa_node.config import Section, non_negative, positive
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import is_hex
from oa_node.nostr.nipsa import AUTONOMY_LEVELS, AgentProfile, AgentSchedule, Trigger
from oa_node.settings import Settings, setting


def _triggers(value: list[str]) -> None:
    for item in value:
        try:
            Trigger.parse(item)
        except ProtocolError as exc:
            raise ValueError(exc.reason) from None


def _threshold(value: list[int]) -> None:
    if value and (len(value) != 2 or not 1 <= value[0] <= value[1]):
        raise ValueError("[k, n] with 1 <= k <= n, or [] for a single-key identity")


def _pubkeys(value: list[str]) -> None:
    for pk in value:
        if not is_hex(pk, 32):
            raise ValueError("64-hex public keys")


def _pubkey(value: str) -> None:
    if value and not is_hex(value, 32):
        raise ValueError("a 64-hex public key, or empty")


@dataclass
class NipsaSettings(
    Settings, section="nipsa", starter={"enabled": False},
    help="NIP-SA agent lifecycle: profile, encrypted state, schedule, ticks. Trajectory "
         "recording works whether or not this is enabled.",
):
    enabled: bool = setting(False, "Publish the agent profile and schedule on start and run "
                            "the tick runner.")
    name: str = setting("", "Agent name in the profile (default: [node] name).")
    about: str = setting("", "What the agent does.")
    capabilities: list[str] = setting([], "Capabilities listed in the profile.")
    autonomy_level: str = setting("bounded", "How freely the agent acts.",
                                  choices=AUTONOMY_LEVELS)
    version: str = setting("", "Agent version (default: the oa-node version).")
    operator: str = setting("", "Hex pubkey of the human operator.", check=_pubkey)
    lud16: str = setting("", "Lightning address for payments to the agent.")
    threshold: list[int] = setting([], "[k, n] when the identity is a FROST group.",
                                   check=_threshold)
    signers: list[str] = setting([], "Hex pubkeys of the FROST share holders.",
                                 check=_pubkeys)
    heartbeat: int = setting(900, "Seconds between heartbeat ticks (0: no heartbeat).",
                             check=non_negative)
    triggers: list[str] = setting([], 'What else wakes the agent: "mention", "dm", "zap", '
                                  '"kind:<n>".', check=_triggers)
    handler_timeout: float = setting(60.0, "Seconds a tick handler may run.", check=positive)
    publish_timeout: float = setting(10.0, "Seconds to wait for relays to OK an event.",
                                     check=positive)
    tick_ttl: int = setting(7 * 86400, "NIP-40 expiration of tick events, in seconds "
                            "(0: keep forever).", check=non_negative)

    @classmethod
    def from_config(cls, table: dict[str, Any] | None) -> NipsaSettings:
        return cls.from_section(table)

    def profile(self, node_name: str) -> AgentProfile:
        from oa_node import __version__

        return AgentProfile(
            name=self.name or node_name, about=self.about,
            capabilities=list(self.capabilities), autonomy_level=self.autonomy_level,
            version=self.version or __version__,
            threshold=(self.threshold[0], self.threshold[1]) if self.threshold else None,
            signers=list(self.signers), operator=self.operator or None,
            lud16=self.lud16 or None,
        )

    def schedule(self, now: int) -> AgentSchedule:
        hb = self.heartbeat or None
        return AgentSchedule(heartbeat=hb, next_tick=now + hb if hb else None, active=True,
                             triggers=[Trigger.parse(t) for t in self.triggers])


def nipsa_section() -> Section:
    return NipsaSettings.section()
