"""oa-node: a node for an open agent marketplace over Nostr."""

__version__ = "0.1.0"
