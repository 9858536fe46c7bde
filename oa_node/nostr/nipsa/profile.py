"""NIP-SA agent profile (kind 39200, ``d profile``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import (
    AGENT_PROFILE,
)
from oa_node.nostr.nipsa.common import (
    AUTONOMY_LEVELS,
    PROFILE_D,
    check_pubkey,
    content_json,
    expect_kind,
    json_object,
)


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
            check_pubkey(pk, "profile signer")
        if self.operator is not None:
            check_pubkey(self.operator, "profile operator")

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
        return EventTemplate(AGENT_PROFILE, content_json(content), tags, created_at)

    @classmethod
    def from_event(cls, event: Event) -> AgentProfile:
        expect_kind(event, AGENT_PROFILE, "profile")
        c = json_object(event.content, "profile")
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
