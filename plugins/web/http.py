"""The dashboard's HTTP/1.1 server, on the core's bounded one (:mod:`oa_node.http1`).

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

from oa_node.http1 import HttpError, Server, answer_and_close, read_head

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


class HttpServer(Server):
    def __init__(self, handler: Handler, host: str, port: int, *,
                 allowed_hosts: Callable[[], set[str]], max_line: int = 8 * 1024,
                 max_headers: int = 32 * 1024, max_body: int = 4 * 1024,
                 read_timeout: float = 10.0) -> None:
        super().__init__(host, port, max_line)
        self.handler = handler
        #: Host header values accepted (DNS rebinding: a page on another name cannot read us)
        self.allowed_hosts = allowed_hosts
        self.max_headers, self.max_body = max_headers, max_body
        self.read_timeout = read_timeout
        self._open: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop listening and end the connections still open (a live stream never ends
        by itself), so none outlives the node."""
        await super().close()
        for task in list(self._open):
            task.cancel()
        await asyncio.gather(*self._open, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._open.add(task)
        try:
            await self._answer(reader, writer)
        except asyncio.CancelledError:  # the server is closing: this connection just ends
            writer.close()
        finally:
            self._open.discard(task)  # type: ignore[arg-type]

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = False
        try:
            got = await asyncio.wait_for(self._read(reader), self.read_timeout)
            if isinstance(got, Request):
                head = got.method == "HEAD"
                resp = await self.handler(got)
            else:
                resp = got
        except HttpError as exc:
            resp = _plain(exc.status, exc.reason)
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
        await answer_and_close(writer, text.encode("latin-1") + (b"" if head else resp.body),
                               None if head else resp.stream)

    async def _read(self, reader: asyncio.StreamReader) -> Request | Response:
        got = await read_head(reader, self.max_headers)
        method, headers = got.method, got.headers
        if headers.get("host", "") not in self.allowed_hosts():
            return _plain(421, "unknown Host: open the dashboard at the address it printed")
        req = Request(method, got.path, parse_qs(got.raw_query, max_num_fields=20), headers)
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
