"""The relay client: :class:`RelayConnection` for one relay, :class:`RelayPool` for many.

Every plugin reaches relays through ``node.pool`` (a RelayPool): publish with per-relay OK
results, subscriptions de-duplicated across relays with an "EOSE from all" signal, queries,
automatic NIP-42 auth, reconnects that resubscribe without gaps, and signature checks on
everything received.
"""

from oa_node.client.connection import RelayConnection, State
from oa_node.client.errors import ClientError
from oa_node.client.nip11 import fetch_relay_info
from oa_node.client.pool import PublishResult, RelayPool
from oa_node.client.subscription import EOSE, Subscription
from oa_node.client.urls import normalize_relay_url

__all__ = [
    "EOSE",
    "ClientError",
    "PublishResult",
    "RelayConnection",
    "RelayPool",
    "State",
    "Subscription",
    "fetch_relay_info",
    "normalize_relay_url",
]
