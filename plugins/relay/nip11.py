"""The NIP-11 relay information document, built from the settings actually in force."""

from __future__ import annotations

import json
from typing import Any

from oa_node import __version__ as oa_version
from oa_node.plugins.relay.settings import RelaySettings

#: NIPs this relay implements end to end (keep in step with the server).
SUPPORTED_NIPS = (1, 9, 11, 40, 42, 45, 77)
MAX_SUBID_LENGTH = 64

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
}


def info_document(settings: RelaySettings) -> dict[str, Any]:
    lim = settings.limits
    auth = settings.auth
    limitation: dict[str, Any] = {
        "max_message_length": lim.max_message_length,
        "max_subid_length": MAX_SUBID_LENGTH,
        "auth_required": auth.read,
        "payment_required": False,
        "restricted_writes": bool(auth.write or auth.write_kinds or lim.kinds_allow),
    }
    optional = {
        "max_subscriptions": lim.max_subscriptions,
        "max_filters": lim.max_filters,
        "max_limit": lim.max_limit,
        "default_limit": lim.default_limit,
        "max_event_tags": lim.max_event_tags,
        "max_content_length": lim.max_content_length,
        "created_at_lower_limit": lim.created_at_lower_limit,
        "created_at_upper_limit": lim.created_at_upper_limit,
    }
    limitation.update({k: v for k, v in optional.items() if v})
    doc: dict[str, Any] = {
        "name": settings.info.name,
        "description": settings.info.description,
        "supported_nips": list(SUPPORTED_NIPS),
        "software": settings.info.software,  # [relay.info] software, version: what runs
        "version": settings.info.version or oa_version,
        "limitation": limitation,
    }
    if settings.info.pubkey:
        doc["pubkey"] = settings.info.pubkey
    if settings.info.contact:
        doc["contact"] = settings.info.contact
    return doc


def info_json(settings: RelaySettings) -> str:
    return json.dumps(info_document(settings), separators=(",", ":"))
