"""The ``[relay]`` config section and the typed settings the server reads on its hot path.

The section is declared once (``relay_section``) for ``node.toml`` validation; the server
works from :class:`RelaySettings`, a plain dataclass built from the validated table, so
tests and ``python -m oa_node.plugins.relay`` can build one without a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from oa_node.config import Key, Section, non_negative, port, positive

_AUTH_SCOPES = ("write", "read")


def relay_section() -> Section:
    return Section(
        "relay",
        help="The Nexus relay: NIP-01/09/11/40/42/45 over websockets, SQLite or PostgreSQL.",
        starter={"enabled": True},
        keys=[
            Key("enabled", bool, False, "Run a relay as part of this node."),
            Key("host", str, "127.0.0.1", "Address to listen on."),
            Key("port", int, 7447, "TCP port (websocket and NIP-11 on the same port).",
                check=port),
            Key("url", str, "", "Public ws(s):// URL clients use; checked in NIP-42 AUTH events"
                " (default ws://<Host header>)."),
            Key("storage", str, "sqlite", "Event storage backend.",
                choices=("sqlite", "postgres")),
            Key("sqlite_path", str, "relay.sqlite3", "SQLite file, relative to the data dir."),
            Key("postgres_dsn", str, None, "PostgreSQL DSN when storage = \"postgres\".",
                optional=True, secret=True),
            Key("purge_interval", float, 60.0, "Seconds between purges of expired events.",
                check=positive),
        ],
        sections=[
            Section(
                "info",
                help="The NIP-11 relay information document.",
                keys=[
                    Key("name", str, "oa-node nexus", "Relay name."),
                    Key("description", str, "An oa-node relay for agent jobs.", "Description."),
                    Key("pubkey", str, "", "Operator's hex public key."),
                    Key("contact", str, "", "Operator contact (URI)."),
                ],
            ),
            Section(
                "limits",
                help="Size and shape limits (0 disables one). Listed in NIP-11.",
                keys=[
                    Key("max_message_length", int, 262144, "Largest websocket message in bytes;"
                        " bigger frames close the connection (1009).", check=positive),
                    Key("max_subscriptions", int, 64, "Open subscriptions per connection.",
                        check=non_negative),
                    Key("max_filters", int, 16, "Filters per REQ/COUNT.", check=non_negative),
                    Key("max_filter_values", int, 1000,
                        "Values per filter field (ids, authors, kinds, each #tag).",
                        check=non_negative),
                    Key("max_limit", int, 1000, "Largest limit honoured (bigger ones are"
                        " clamped).", check=non_negative),
                    Key("default_limit", int, 500, "Limit used when a filter has none.",
                        check=non_negative),
                    Key("max_event_tags", int, 2000, "Tags per event.", check=non_negative),
                    Key("max_content_length", int, 131072, "Characters of event content.",
                        check=non_negative),
                    Key("created_at_lower_limit", int, 0, "Reject events older than this many"
                        " seconds.", check=non_negative),
                    Key("created_at_upper_limit", int, 900, "Reject events this many seconds in"
                        " the future.", check=non_negative),
                    Key("kinds_allow", list, [], "Only these kinds are accepted (empty: all).",
                        item=int),
                    Key("kinds_deny", list, [], "These kinds are refused.", item=int),
                    Key("max_connections_per_ip", int, 0, "Concurrent connections per IP.",
                        check=non_negative),
                    Key("max_pending_messages", int, 20000, "Outgoing messages queued for one"
                        " slow connection before it is closed.", check=positive),
                    Key("handshake_timeout", float, 10.0, "Seconds to finish the websocket"
                        " handshake.", check=positive),
                    Key("ping_interval", float, 20.0, "Seconds between keepalive pings.",
                        check=positive),
                    Key("ping_timeout", float, 20.0, "Seconds to wait for a pong before"
                        " dropping a half-open connection.", check=positive),
                ],
            ),
            Section(
                "auth",
                help="NIP-42. A challenge is always sent on connect; these say when it is"
                " required.",
                keys=[
                    Key("required_for", list, [], 'Require AUTH for "write" and/or "read".',
                        item=str, choices=_AUTH_SCOPES),
                    Key("write_kinds", list, [], "Kinds whose publication requires AUTH.",
                        item=int),
                    Key("read_kinds", list, [], "Kinds only served to authenticated clients.",
                        item=int),
                    Key("p_restricted_kinds", list, [], "Kinds served only to their author or a"
                        " p-tagged recipient, authenticated (DMs, job results).", item=int),
                ],
            ),
            Section(
                "rate_limits",
                help="Token buckets (rate per second, burst); a rate of 0 disables one.",
                keys=[
                    Key("ip_events_per_second", float, 50.0, "EVENTs per client IP.",
                        check=non_negative),
                    Key("ip_events_burst", int, 500, "Burst of EVENTs per client IP.",
                        check=positive),
                    Key("pubkey_events_per_second", float, 20.0, "EVENTs per author.",
                        check=non_negative),
                    Key("pubkey_events_burst", int, 200, "Burst of EVENTs per author.",
                        check=positive),
                    Key("ip_reqs_per_second", float, 20.0, "REQ/COUNT per client IP.",
                        check=non_negative),
                    Key("ip_reqs_burst", int, 200, "Burst of REQ/COUNT per client IP.",
                        check=positive),
                ],
            ),
        ],
    )


@dataclass
class Limits:
    max_message_length: int = 262144
    max_subscriptions: int = 64
    max_filters: int = 16
    max_filter_values: int = 1000
    max_limit: int = 1000
    default_limit: int = 500
    max_event_tags: int = 2000
    max_content_length: int = 131072
    created_at_lower_limit: int = 0
    created_at_upper_limit: int = 900
    kinds_allow: list[int] = field(default_factory=list)
    kinds_deny: list[int] = field(default_factory=list)
    max_connections_per_ip: int = 0
    max_pending_messages: int = 20000
    handshake_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0


@dataclass
class AuthSettings:
    required_for: list[str] = field(default_factory=list)
    write_kinds: list[int] = field(default_factory=list)
    read_kinds: list[int] = field(default_factory=list)
    p_restricted_kinds: list[int] = field(default_factory=list)

    @property
    def write(self) -> bool:
        return "write" in self.required_for

    @property
    def read(self) -> bool:
        return "read" in self.required_for


@dataclass
class RateLimits:
    ip_events_per_second: float = 50.0
    ip_events_burst: int = 500
    pubkey_events_per_second: float = 20.0
    pubkey_events_burst: int = 200
    ip_reqs_per_second: float = 20.0
    ip_reqs_burst: int = 200

    @classmethod
    def off(cls) -> RateLimits:
        return cls(0.0, 1, 0.0, 1, 0.0, 1)


@dataclass
class Info:
    name: str = "oa-node nexus"
    description: str = "An oa-node relay for agent jobs."
    pubkey: str = ""
    contact: str = ""


@dataclass
class RelaySettings:
    host: str = "127.0.0.1"
    port: int = 7447
    url: str = ""
    purge_interval: float = 60.0
    limits: Limits = field(default_factory=Limits)
    auth: AuthSettings = field(default_factory=AuthSettings)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    info: Info = field(default_factory=Info)

    @classmethod
    def from_section(cls, table: dict[str, Any]) -> RelaySettings:
        """Build from the validated ``[relay]`` table (extra keys such as storage ignored)."""

        def take(kind: type, sub: dict[str, Any] | None) -> Any:
            names = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in (sub or {}).items() if k in names})

        return cls(
            host=table.get("host", "127.0.0.1"),
            port=table.get("port", 7447),
            url=table.get("url", "") or "",
            purge_interval=table.get("purge_interval", 60.0),
            limits=take(Limits, table.get("limits")),
            auth=take(AuthSettings, table.get("auth")),
            rate_limits=take(RateLimits, table.get("rate_limits")),
            info=take(Info, table.get("info")),
        )
