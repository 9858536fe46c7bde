"""A small HTTP/1.1 server for the dashboard, on ``asyncio.start_server``.

Why not a framework: the dashboard serves a few server-rendered pages, two static files and
one login form; what it must get right (bounded reads, the Host check, security headers on
every answer) is short enough to read here whole. One request per connection (``Connection:
close``), GET/HEAD for everything, POST only where the handler allows it, with a small
``application/x-www-form-urlencoded`` body; a request head and body within fixed sizes and a
read timeout, so a slow or huge client cannot hold the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

log = logging.getLogger("oa_node.web.http")

REASONS = {200: "OK", 204: "No Content", 303: "See Other", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 413: "Payload Too Large", 414: "URI Too Long",
           421: "Misdirected Request", 431: "Request Header Fields Too Large",
           500: "Internal Server Error"}

#: On every answer: no script but the dashboard's own files, no inline script or style, no
#: framing, no plugins, forms post only to the dashboard, no referrer leaves it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    def arg(self, name: str, default: str = "") -> str:
        return (self.query.get(name) or [default])[0]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: a body sent as it comes (server-sent events) instead of ``body``; the connection
    #: closes when it ends or the client goes
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    def __init__(self, handler: Handler, host: str, port: int, *,
                 allowed_hosts: Callable[[], set[str]], max_line: int = 8 * 1024,
                 max_headers: int = 32 * 1024, max_body: int = 4 * 1024,
                 read_timeout: float = 10.0) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        #: Host header values accepted (DNS rebinding: a page on another name cannot read us)
        self.allowed_hosts = allowed_hosts
        self.max_line, self.max_headers, self.max_body = max_line, max_headers, max_body
        self.read_timeout = read_timeout
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=self.max_line + 2)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = False
        try:
            got = await asyncio.wait_for(self._read(reader), self.read_timeout)
            if isinstance(got, Request):
                head = got.method == "HEAD"
                resp = await self.handler(got)
            else:
                resp = got
        except TimeoutError:
            resp = _plain(408, "request timeout")
        except Exception:  # the node keeps serving whatever one request does
            log.exception("dashboard request failed")
            resp = _plain(500, "internal error")
        length = {} if resp.stream is not None else {"Content-Length": str(len(resp.body))}
        headers = {"Content-Type": resp.content_type, **length, **SECURITY_HEADERS,
                   **resp.headers, "Connection": "close"}
        text = f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Error')}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        try:
            writer.write(text.encode("latin-1") + (b"" if head else resp.body))
            await writer.drain()
            if resp.stream is not None and not head:
                async for chunk in resp.stream:
                    writer.write(chunk)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _read(self, reader: asyncio.StreamReader) -> Request | Response:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            return _plain(414, "request line too long")
        except asyncio.IncompleteReadError:
            return _plain(400, "incomplete request")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _plain(400, "malformed request line")
        method, target, _ = parts
        headers: dict[str, str] = {}
        size = 0
        while True:
            try:
                h = await reader.readuntil(b"\r\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                return _plain(431, "malformed or oversized headers")
            size += len(h)
            if size > self.max_headers:
                return _plain(431, "headers too large")
            if h == b"\r\n":
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("host", "") not in self.allowed_hosts():
            return _plain(421, "unknown Host: open the dashboard at the address it printed")
        path, _, raw_query = target.partition("?")
        req = Request(method, path, parse_qs(raw_query, max_num_fields=20), headers)
        if "transfer-encoding" in headers:
            return _plain(413, "chunked bodies are not accepted")
        if method == "POST":
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                return _plain(400, "bad Content-Length")
            if length < 0 or length > self.max_body:
                return _plain(413, "request body too large")
            body = await reader.readexactly(length)
            req.form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        elif method in ("GET", "HEAD"):
            if headers.get("content-length", "0") not in ("", "0"):
                return _plain(413, "request bodies are not accepted")
        else:
            return _plain(405, "only GET, and POST to log in")
        return req


def _plain(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode(), "text/plain; charset=utf-8")
