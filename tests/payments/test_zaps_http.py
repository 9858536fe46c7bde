"""The LNURL endpoint's HTTP server: the read timeout bounds a slow client, not the time the
node takes to answer (an invoice goes through the wallet over relays)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from oa_node.plugins.zaps.http import HttpServer

pytestmark = pytest.mark.anyio


async def get(port: int, raw: bytes) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


async def test_slow_answer_is_not_a_request_timeout() -> None:
    async def slow(path: str, query: str, client: str) -> tuple[int, dict[str, Any]]:
        await asyncio.sleep(0.6)
        return 200, {"path": path, "query": query}

    server = HttpServer(slow, "127.0.0.1", 0, read_timeout=0.2, handler_timeout=5)
    port = await server.start()
    try:
        status, body = await get(port, b"GET /.well-known/lnurlp/a?x=1 HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, {"path": "/.well-known/lnurlp/a", "query": "x=1"})
    finally:
        await server.close()


async def test_slow_client_and_stuck_handler_get_clear_answers() -> None:
    async def stuck(path: str, query: str, client: str) -> tuple[int, dict[str, Any]]:
        await asyncio.Event().wait()  # stuck for good: the handler timeout must end it
        return 200, {}

    server = HttpServer(stuck, "127.0.0.1", 0, read_timeout=0.2, handler_timeout=0.3)
    port = await server.start()
    try:
        status, body = await get(port, b"GET /x HTTP/1.1\r\n")  # head never finished
        assert status == 408 and body["reason"] == "request timeout"
        status, body = await get(port, b"GET /x HTTP/1.1\r\n\r\n")
        assert status == 503 and "too long" in body["reason"]
    finally:
        await server.close()


async def test_client_address_is_forwarded_only_by_trusted_proxies() -> None:
    async def echo(path: str, query: str, client: str) -> tuple[int, dict[str, Any]]:
        return 200, {"client": client}

    forwarded = b"GET /x HTTP/1.1\r\nX-Forwarded-For: 10.0.0.9, 203.0.113.7\r\n\r\n"
    for trusted, expected in ((frozenset(), "127.0.0.1"),
                              (frozenset({"127.0.0.1"}), "203.0.113.7")):
        server = HttpServer(echo, "127.0.0.1", 0, trusted_proxies=trusted)
        port = await server.start()
        try:
            assert await get(port, forwarded) == (200, {"client": expected})
            assert await get(port, b"GET /x HTTP/1.1\r\n\r\n") == (200, {"client": "127.0.0.1"})
        finally:
            await server.close()


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (b"GET /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 413, "request bodies"),
    (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413, "request bodies"),
    (b"POST /x HTTP/1.1\r\n\r\n", 405, "only GET"),
    (b"GET /x\r\n\r\n", 400, "malformed request line"),
    (b"GET /x HTTP/1.1", 400, "incomplete request"),
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414, "request line too long"),
    (b"GET /x HTTP/1.1\r\n" + b"X-Big: " + b"b" * 300 + b"\r\n\r\n", 431, "oversized headers"),
    (b"GET /x HTTP/1.1\r\n" + (b"X-Big: " + b"b" * 100 + b"\r\n") * 3 + b"\r\n", 431,
     "headers too large"),
])
async def test_bad_heads_get_their_status_and_never_reach_the_handler(
        raw: bytes, status: int, reason: str) -> None:
    calls: list[str] = []

    async def handler(path: str, query: str, client: str) -> tuple[int, dict[str, Any]]:
        calls.append(path)
        return 200, {}

    server = HttpServer(handler, "127.0.0.1", 0, max_line=256, max_headers=256)
    port = await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        writer.write_eof()  # all a client sends (an incomplete head stays incomplete)
        head, _, body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")
        writer.close()
        got = int(head.split(b" ")[1]), json.loads(body)
        assert got[0] == status and reason in got[1]["reason"], got
        assert calls == []
        assert await get(port, b"GET /ok HTTP/1.1\r\n\r\n") == (200, {})  # still serving
    finally:
        await server.close()
