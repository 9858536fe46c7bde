"""The bounded part of a small HTTP/1.1 server on ``asyncio.start_server``: reading a
request head and answering once on a ``Connection: close`` connection.

For the small HTTP endpoints plugins serve (an LNURL callback, a dashboard), which
each decide the rest (methods, bodies, the answer's headers). The request line is bounded
by the stream reader's ``limit`` (give ``start_server`` ``limit=max_line + 2``), the header
block by ``max_headers`` bytes; a bad head is an :class:`HttpError` with the status to
answer, never another exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass


class Server:
    """An ``asyncio`` server on ``host:port`` (``port=0``: any free port, set by ``start``)
    whose stream limit bounds the request line; a subclass answers in ``_serve``."""

    def __init__(self, host: str, port: int, max_line: int) -> None:
        self.host = host
        self.port = port
        self.max_line = max_line
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
        raise NotImplementedError


class HttpError(Exception):
    """A request answered with an error status (and ``reason`` as its text)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RequestHead:
    method: str
    #: the request target as sent: ``path`` and ``raw_query`` split it, nothing is decoded
    target: str
    #: header names lower-cased; a repeated header keeps its last value
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def raw_query(self) -> str:
        return self.target.partition("?")[2]


async def read_head(reader: asyncio.StreamReader, max_headers: int) -> RequestHead:
    """The request line and headers, or :class:`HttpError` (414, 400 or 431)."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(414, "request line too long") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "incomplete request") from None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    size = 0
    while True:
        try:
            h = await reader.readuntil(b"\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            raise HttpError(431, "malformed or oversized headers") from None
        size += len(h)
        if size > max_headers:
            raise HttpError(431, "headers too large")
        if h == b"\r\n":
            return RequestHead(parts[0], parts[1], headers)
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def answer_and_close(writer: asyncio.StreamWriter, data: bytes,
                           stream: AsyncIterator[bytes] | None = None) -> None:
    """Send ``data`` (then ``stream``'s chunks, if any) and close; a client that went away
    is not an error."""
    try:
        writer.write(data)
        await writer.drain()
        if stream is not None:
            async for chunk in stream:
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
