"""The ``[relay]`` config section and the typed settings the server reads on its hot path.

Each key is declared once, as a field of :class:`RelaySettings` (or of one of its nested
tables); the ``[relay]`` section ``node.toml`` is validated against is derived from it, and
the server works from the dataclass, so tests and ``python -m oa_node.plugins.relay`` can
build one without a node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from oa_node.config import Section, non_negative, port, positive
from oa_node.settings import Settings, setting, subsection

_AUTH_SCOPES = ("write", "read")


@dataclass
class Info(Settings, help="The NIP-11 relay information document."):
    name: str = setting("oa-node nexus", "Relay name.")
    description: str = setting("An oa-node relay for agent jobs.", "Description.")
    pubkey: str = setting("", "Operator's hex public key.")
    contact: str = setting("", "Operator contact (URI).")
    software: str = setting("oa-node", "The relay software (NIP-11 `software`): this "
                            "package's name by default,\nor the URL of the source you run.")
    version: str = setting("", "Its version (NIP-11 `version`); empty: the running "
                           "oa-node's version.")


@dataclass
class Limits(Settings, help="Size and shape limits (0 disables one). Listed in NIP-11."):
    max_message_length: int = setting(262144, "Largest websocket message in bytes; bigger "
                                      "frames close the connection (1009).", check=positive)
    max_subscriptions: int = setting(64, "Open subscriptions per connection.",
                                     check=non_negative)
    max_filters: int = setting(16, "Filters per REQ/COUNT.", check=non_negative)
    max_filter_values: int = setting(1000, "Values per filter field (ids, authors, kinds, "
                                     "each #tag).", check=non_negative)
    max_connection_filter_values: int = setting(
        10000, "Filter values (ids, authors, kinds, tag values) one connection's open\n"
        "subscriptions may hold in all; a REQ past it is CLOSED blocked. Each costs the\n"
        "relay ~200 bytes while open; 10,000 fits a 2,000-author feed and its profiles\n"
        "several times over.", check=non_negative)
    max_limit: int = setting(1000, "Largest limit honoured (bigger ones are clamped).",
                             check=non_negative)
    default_limit: int = setting(500, "Limit used when a filter has none.", check=non_negative)
    negentropy_max_records: int = setting(500000, "Events one NIP-77 (negentropy) sync may "
                                          "cover; past it NEG-ERR blocked.",
                                          check=non_negative)
    max_event_tags: int = setting(2000, "Tags per event.", check=non_negative)
    max_content_length: int = setting(131072, "Characters of event content.",
                                      check=non_negative)
    created_at_lower_limit: int = setting(0, "Reject events older than this many seconds.",
                                          check=non_negative)
    created_at_upper_limit: int = setting(900, "Reject events this many seconds in the "
                                          "future.", check=non_negative)
    kinds_allow: list[int] = setting([], "Only these kinds are accepted (empty: all).")
    kinds_deny: list[int] = setting([], "These kinds are refused.")
    max_connections_per_ip: int = setting(0, "Concurrent connections per IP.",
                                          check=non_negative)
    max_pending_messages: int = setting(20000, "Outgoing messages queued for one slow "
                                        "connection before it is closed.", check=positive)
    handshake_timeout: float = setting(10.0, "Seconds to finish the websocket handshake.",
                                       check=positive)
    ping_interval: float = setting(20.0, "Seconds between keepalive pings.", check=positive)
    ping_timeout: float = setting(20.0, "Seconds to wait for a pong before dropping a "
                                  "half-open connection.", check=positive)


@dataclass
class AuthSettings(Settings, help="NIP-42. A challenge is always sent on connect; these say "
                   "when it is required."):
    required_for: list[str] = setting([], 'Require AUTH for "write" and/or "read".',
                                      choices=_AUTH_SCOPES)
    write_kinds: list[int] = setting([], "Kinds whose publication requires AUTH.")
    read_kinds: list[int] = setting([], "Kinds only served to authenticated clients.")
    p_restricted_kinds: list[int] = setting([], "Kinds served only to their author or a "
                                            "p-tagged recipient, authenticated (DMs, job "
                                            "results).")

    @property
    def write(self) -> bool:
        return "write" in self.required_for

    @property
    def read(self) -> bool:
        return "read" in self.required_for


@dataclass
class RateLimits(Settings, help="Token buckets (rate per second, burst); a rate of 0 "
                 "disables one."):
    ip_events_per_second: float = setting(50.0, "EVENTs per client IP.", check=non_negative)
    ip_events_burst: int = setting(500, "Burst of EVENTs per client IP.", check=positive)
    pubkey_events_per_second: float = setting(20.0, "EVENTs per author.", check=non_negative)
    pubkey_events_burst: int = setting(200, "Burst of EVENTs per author.", check=positive)
    ip_reqs_per_second: float = setting(20.0, "REQ/COUNT per client IP.", check=non_negative)
    ip_reqs_burst: int = setting(200, "Burst of REQ/COUNT per client IP.", check=positive)

    @classmethod
    def off(cls) -> RateLimits:
        return cls(0.0, 1, 0.0, 1, 0.0, 1)


@dataclass
class RelaySettings(
    Settings, section="relay", starter={"enabled": True},
    help="The Nexus relay: NIP-01/09/11/40/42/45 over websockets, SQLite or PostgreSQL.",
):
    enabled: bool = setting(False, "Run a relay as part of this node.")
    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(7447, "TCP port (websocket and NIP-11 on the same port).", check=port)
    url: str = setting("", "Public ws(s):// URL clients use; checked in NIP-42 AUTH events "
                       "(default ws://<Host header>).")
    storage: str = setting("sqlite", "Event storage backend.", choices=("sqlite", "postgres"))
    sqlite_path: str = setting("relay.sqlite3", "SQLite file, relative to the data dir.")
    postgres_dsn: str | None = setting(
        None, 'PostgreSQL DSN when storage = "postgres". Opt-in speed-up, off by default: '
        "?synchronous_commit=off stops each commit waiting for its WAL flush, and a crash "
        "of PostgreSQL itself (not of the relay) then loses the last ~0.6 s of events "
        "already answered OK true.", secret=True)
    purge_interval: float = setting(60.0, "Seconds between purges of expired events.",
                                    check=positive)
    info: Info = subsection(Info)
    limits: Limits = subsection(Limits)
    auth: AuthSettings = subsection(AuthSettings)
    rate_limits: RateLimits = subsection(RateLimits)

    def problems(self, resolve: Callable[[str], Path]) -> Iterator[tuple[str, str]]:
        if self.enabled and self.storage == "postgres" and not self.postgres_dsn:
            yield "storage", '"postgres" needs postgres_dsn (a postgresql:// DSN)'


def relay_section() -> Section:
    return RelaySettings.section()
