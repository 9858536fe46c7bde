"""A minimal HTTP/1.1 server for the LNURL-pay endpoint, on ``asyncio.start_server``.

Why not a framework: the endpoint answers two kinds of GET with small JSON bodies, and
``aiohttp`` is not a dependency. Why not ``websockets``' ``process_request`` hook: that
would tie the zaps endpoint to a websocket server (the relay's), while a node may serve
zaps without running a relay. What this handles is deliberately small and bounded: GET and
HEAD only, no request bodies, a request line and headers within fixed sizes, a read
timeout, one request per connection (``Connection: close``), CORS open for web wallets.

The handler is told the client's address (for per-client limits): the TCP peer, or the last
``X-Forwarded-For`` entry when the peer is one of ``trusted_proxies`` (a TLS proxy in front
of the node; from anyone else the header is ignored, so it cannot be forged).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from oa_node.http1 import HttpError, RequestHead, Server, answer_and_close, read_head

log = logging.getLogger("oa_node.zaps.http")

#: ``handler(path, raw_query, client) -> (status, json body)``; the raw query is not decoded
#: so the LNURL callback can hash the ``nostr`` parameter exactly as it was sent; ``client``
#: is the client's IP address.
Handler = Callable[[str, str, str], Awaitable[tuple[int, dict[str, Any]]]]

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 413: "Payload Too Large", 414: "URI Too Long",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HttpServer(Server):
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
                 max_line: int = 16 * 1024, max_headers: int = 32 * 1024,
                 read_timeout: float = 10.0, handler_timeout: float = 60.0,
                 trusted_proxies: frozenset[str] = frozenset()) -> None:
        super().__init__(host, port, max_line)
        self.handler = handler
        self.max_headers = max_headers
        #: for the request head only: a slow client must not hold a connection open
        self.read_timeout = read_timeout
        #: for answering (an invoice goes through the wallet, over relays)
        self.handler_timeout = handler_timeout
        self.trusted_proxies = trusted_proxies

    async def start(self) -> int:
        port = await super().start()
        log.info("LNURL endpoint on http://%s:%d", self.host, port)
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = False
        try:
            peer = writer.get_extra_info("peername")
            peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            request = await asyncio.wait_for(read_head(reader, self.max_headers),
                                             self.read_timeout)
            _check(request)
            head = request.method == "HEAD"
            client = peer_ip
            forwarded = request.headers.get("x-forwarded-for", "")
            if forwarded and peer_ip in self.trusted_proxies:
                client = forwarded.split(",")[-1].strip()[:64] or peer_ip
            try:
                status, body = await asyncio.wait_for(
                    self.handler(request.path, request.raw_query, client), self.handler_timeout)
            except TimeoutError:
                status, body = 503, {"status": "ERROR",
                                     "reason": "took too long to answer, try again"}
        except HttpError as exc:
            status, body, head = exc.status, {"status": "ERROR", "reason": exc.reason}, False
        except TimeoutError:
            status, body, head = 408, {"status": "ERROR", "reason": "request timeout"}, False
        except Exception:  # the node keeps serving whatever one request does
            log.exception("LNURL request failed")
            status, body, head = 500, {"status": "ERROR", "reason": "internal error"}, False
        payload = json.dumps(body).encode()
        headers = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                   "Content-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\n"
                   "Access-Control-Allow-Origin: *\r\n"
                   "Cache-Control: no-store\r\n"
                   "Connection: close\r\n\r\n").encode()
        await answer_and_close(writer, headers + (b"" if head else payload))


def _check(request: RequestHead) -> None:
    """GET or HEAD, without a body (:class:`HttpError` otherwise)."""
    if request.headers.get("content-length", "") not in ("", "0") or \
            "transfer-encoding" in request.headers:
        raise HttpError(413, "request bodies are not accepted")
    if request.method not in ("GET", "HEAD"):
        raise HttpError(405, "only GET is supported")
