"""Fetch a relay's NIP-11 information document.

Plain ``urllib`` in a worker thread: one small GET does not justify an HTTP client
dependency. Proxies from the environment are ignored on purpose (relays are addressed
directly, and tests stay on 127.0.0.1).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anyio

from oa_node.client.errors import ClientError
from oa_node.client.urls import http_url

MAX_INFO_BYTES = 1024 * 1024


def _get(url: str, timeout: float) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "application/nostr+json",
                                                   "User-Agent": "oa-node"})
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_INFO_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClientError(f"{url}: cannot fetch relay information: {reason}") from None
    if len(body) > MAX_INFO_BYTES:
        raise ClientError(f"{url}: relay information document larger than 1 MiB")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ClientError(f"{url}: relay information is not JSON (is this a Nostr relay?)") \
            from None
    if not isinstance(doc, dict):
        raise ClientError(f"{url}: relay information must be a JSON object")
    return doc


async def fetch_relay_info(relay_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The NIP-11 document of ``relay_url`` (``ws://`` or ``wss://``) as a dict."""
    url = http_url(relay_url)
    # urllib's timeout bounds each socket read, not the whole download: a relay trickling
    # bytes is cut off here (the worker thread is abandoned and ends with its socket).
    with anyio.move_on_after(timeout + 1):
        return await anyio.to_thread.run_sync(_get, url, timeout, abandon_on_cancel=True)
    raise ClientError(f"{url}: no relay information within {timeout:g}s")
