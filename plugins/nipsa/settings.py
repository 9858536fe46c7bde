"""The ``[nipsa]`` config section and the typed settings the agent runtime reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oa_node.config import Key, Section, non_negative, positive
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import is_hex
from oa_node.nostr.nipsa import AUTONOMY_LEVELS, AgentProfile, AgentSchedule, Trigger


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


def nipsa_section() -> Section:
    return Section(
        "nipsa",
        help="NIP-SA agent lifecycle: profile, encrypted state, schedule, ticks. Trajectory "
             "recording works whether or not this is enabled.",
        keys=[
            Key("enabled", bool, False,
                "Publish the agent profile and schedule on start and run the tick runner."),
            Key("name", str, "", "Agent name in the profile (default: [node] name)."),
            Key("about", str, "", "What the agent does."),
            Key("capabilities", list, [], "Capabilities listed in the profile.", item=str),
            Key("autonomy_level", str, "bounded", "How freely the agent acts.",
                choices=AUTONOMY_LEVELS),
            Key("version", str, "", "Agent version (default: the oa-node version)."),
            Key("operator", str, "", "Hex pubkey of the human operator.", check=_pubkey),
            Key("lud16", str, "", "Lightning address for payments to the agent."),
            Key("threshold", list, [], "[k, n] when the identity is a FROST group.",
                item=int, check=_threshold),
            Key("signers", list, [], "Hex pubkeys of the FROST share holders.",
                item=str, check=_pubkeys),
            Key("heartbeat", int, 900, "Seconds between heartbeat ticks (0: no heartbeat).",
                check=non_negative),
            Key("triggers", list, [],
                'What else wakes the agent: "mention", "dm", "zap", "kind:<n>".',
                item=str, check=_triggers),
            Key("handler_timeout", float, 60.0, "Seconds a tick handler may run.",
                check=positive),
            Key("publish_timeout", float, 10.0, "Seconds to wait for relays to OK an event.",
                check=positive),
            Key("tick_ttl", int, 7 * 86400,
                "NIP-40 expiration of tick events, in seconds (0: keep forever).",
                check=non_negative),
        ],
        starter={"enabled": False},
    )


@dataclass
class NipsaSettings:
    enabled: bool = False
    name: str = ""
    about: str = ""
    capabilities: list[str] = field(default_factory=list)
    autonomy_level: str = "bounded"
    version: str = ""
    operator: str = ""
    lud16: str = ""
    threshold: list[int] = field(default_factory=list)
    signers: list[str] = field(default_factory=list)
    heartbeat: int = 900
    triggers: list[str] = field(default_factory=list)
    handler_timeout: float = 60.0
    publish_timeout: float = 10.0
    tick_ttl: int = 7 * 86400

    @classmethod
    def from_config(cls, table: dict[str, Any] | None) -> NipsaSettings:
        return cls(**(table or {}))

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
