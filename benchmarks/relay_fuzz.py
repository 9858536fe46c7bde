"""Hostile client for benchmarks/relay_robustness.py: fuzzed and mutated frames, many sockets.

    python benchmarks/relay_fuzz.py --url ws://127.0.0.1:PORT --frames 1000000 --conns 6

One process, raw sockets (RFC 6455 written by hand, so it can also break the framing).
A pool of frame templates is generated once (random bytes, truncated and deeply nested
JSON, huge numbers, invalid UTF-8, oversized frames, 100-filter REQs, REQ/CLOSE floods,
mutated EVENT/REQ/COUNT/AUTH/NEG-* messages with flipped fields, wrong types and bad
signatures, lone surrogates, binary frames, broken websocket framing); each send picks a
template and, for half of the ASCII ones, overwrites a few bytes at random, so the frames
keep changing at a few microseconds each. Frames go out in batches under TCP back-pressure;
a frame that must make the relay close the connection (oversized, invalid UTF-8, broken
framing) ends its batch, and the connection is reopened once the relay has closed it.
``--source-ips N`` spreads the connections over
loopback addresses 127.0.0.2 to 127.0.0.N+1, so the relay's per-IP limits see N clients.
Every ``--probe-every`` batches a connection asks a tiny REQ and waits (bounded) for its
answer: a connection the relay stopped serving is counted as ``stalled``.

Prints one JSON line: frames sent by category, the relay's answers by type (and the
commonest reasons), close codes, reconnects, stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from oa_node.nostr.event import EventTemplate, sign_event
from oa_node.nostr.negentropy import Negentropy, Storage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay_loadgen import RawWS  # a sibling script, not a package

#: category -> (weight, closes the connection)
CATEGORIES: dict[str, tuple[float, bool]] = {
    "random_binary": (4, False),
    "random_text": (6, False),
    "invalid_utf8": (0.15, True),
    "truncated_json": (10, False),
    "deep_nesting": (0.4, False),
    "huge_numbers": (7, False),
    "oversized": (0.03, True),
    "many_filters": (2, False),
    "req_close_flood": (16, False),
    "mutated_event": (18, False),
    "valid_event": (3, False),
    "mutated_req": (10, False),
    "mutated_count": (4, False),
    "mutated_auth": (4, False),
    "mutated_neg": (5, False),
    "odd_arrays": (4, False),
    "odd_unicode": (4, False),
    "ws_violation": (0.06, True),
}

HUGE = ["1e999", "-1e999", "1" + "0" * 5000, "-" + "9" * 4400, "18446744073709551616",
        "9223372036854775808", "-9223372036854775809", "340282366920938463463374607431768211456",
        "1e308", "2.5", "-1", "0.0000001", "1E+2", "NaN", "Infinity", "-Infinity",
        "4294967296", "65536", "1" + "0" * 30]
SURROGATES = ["\\ud800", "\\udfff", "\\ud83d", "\\u0000", "\\uffff", "\\ud800\\ud800",
              "\ufeff", "\u2028", "😀", "\\u00e9", "é"]


def _hex(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).hex()


class Pool:
    """Frame templates by category: (category, opcode, payload, closes, ascii)."""

    def __init__(self, rng: random.Random, size: int, max_message: int, challenge: str,
                 url: str, only: list[str] | None = None) -> None:
        self.rng = rng
        self.max_message = max_message
        self.url = url
        secret = bytes.fromhex("11" * 32)
        now = int(time.time())
        self.events = [
            sign_event(EventTemplate(kind=rng.choice([1, 7, 30023, 5050, 20001, 10002]),
                                     content=f"fuzz seed {i} " + "x" * rng.randrange(0, 64),
                                     tags=[["t", "fuzz"], ["d", str(i % 4)]], created_at=now - i),
                       secret).to_dict()
            for i in range(64)
        ]
        self.auth = [
            sign_event(EventTemplate(kind=22242, content="",
                                     tags=[["relay", url], ["challenge", challenge]]),
                       secret).to_dict()
            for _ in range(4)
        ]
        self.neg_init = Negentropy(Storage([])).initiate().hex()
        names = [n for n in CATEGORIES if not only or n in only]
        weights = [CATEGORIES[n][0] for n in names]
        self.items: list[tuple[str, int, bytes, bool, bool]] = []
        for name in rng.choices(names, weights, k=size):
            opcode, payload = getattr(self, "_" + name)()
            closes = CATEGORIES[name][1]
            ascii_ok = opcode in (1, 2) and not closes and payload.isascii()
            self.items.append((name, opcode, payload, closes, ascii_ok))

    # --- generators: each returns (opcode, payload) ----------------------------------

    def _random_binary(self) -> tuple[int, bytes]:
        return 2, self.rng.randbytes(self.rng.randrange(0, 600))

    def _random_text(self) -> tuple[int, bytes]:
        alphabet = '[]{}",:0123456789abcdefEVENTREQCLOSE \\nulltruefalse-.eE'
        n = self.rng.randrange(0, 400)
        return 1, "".join(self.rng.choices(alphabet, k=n)).encode()

    def _invalid_utf8(self) -> tuple[int, bytes]:
        bad = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                               b"\xe2\x82", b"\xc0\xaf"])
        return 1, b'["EVENT",{"content":"' + bad + b'"}]'

    def _truncated_json(self) -> tuple[int, bytes]:
        text = self._valid_message()
        return 1, text[: self.rng.randrange(0, max(1, len(text)))]

    def _valid_message(self) -> bytes:
        r = self.rng.random()
        if r < 0.4:
            return json.dumps(["EVENT", self.rng.choice(self.events)]).encode()
        if r < 0.7:
            return json.dumps(["REQ", "s1", {"kinds": [1], "limit": 5}, {"#t": ["fuzz"]}]).encode()
        if r < 0.8:
            return json.dumps(["COUNT", "c1", {"authors": [self.events[0]["pubkey"]]}]).encode()
        if r < 0.9:
            return json.dumps(["AUTH", self.rng.choice(self.auth)]).encode()
        return json.dumps(["NEG-OPEN", "n1", {"kinds": [1]}, self.neg_init]).encode()

    def _deep_nesting(self) -> tuple[int, bytes]:
        d = self.rng.choice([100, 1000, 5000, 20000, 100000])
        shape = self.rng.randrange(5)
        if shape == 0:
            body = "[" * d + "]" * d
        elif shape == 1:
            body = '["REQ","deep",' + '{"a":' * d + "1" + "}" * d + "]"
        elif shape == 2:
            body = '["EVENT",{"tags":' + "[" * d + "]" * d + "}]"
        elif shape == 3:
            body = "[" * d  # never closed
        else:
            body = '["NEG-OPEN","n",' + "[" * d + "]" * d + ',"61"]'
        return 1, body[: self.max_message].encode()

    def _huge_numbers(self) -> tuple[int, bytes]:
        h = self.rng.choice(HUGE)
        ev = dict(self.rng.choice(self.events))
        field = self.rng.choice(["kind", "created_at", "since", "until", "limit", "kinds"])
        if field in ("kind", "created_at"):
            text = json.dumps(["EVENT", ev]).replace(f'"{field}": {ev[field]}', f'"{field}": {h}')
        elif field == "kinds":
            text = f'["REQ","h",{{"kinds":[{h},1]}}]'
        else:
            text = f'["{self.rng.choice(["REQ", "COUNT"])}","h",{{"{field}":{h}}}]'
        return 1, text.encode()

    def _oversized(self) -> tuple[int, bytes]:
        n = self.max_message + self.rng.choice([1, 100, 65536])
        head = '["EVENT",{"content":"'
        return 1, (head + "x" * (n - len(head) - 3) + '"}]').encode()

    def _many_filters(self) -> tuple[int, bytes]:
        r = self.rng.random()
        typ = "COUNT" if r < 0.2 else "REQ"
        if r < 0.7:
            filters = [{"kinds": [i], "limit": 1} for i in range(100)]
        elif r < 0.9:
            filters = [{"authors": [_hex(self.rng, 32) for _ in range(1500)]}]
        else:
            filters = [{"#e": [_hex(self.rng, 32) for _ in range(200)], "kinds": list(range(50))}
                       for _ in range(10)]
        return 1, json.dumps([typ, f"m{self.rng.randrange(100)}", *filters]).encode()

    def _req_close_flood(self) -> tuple[int, bytes]:
        r = self.rng.random()
        sub = f"f{self.rng.randrange(200)}"
        if r < 0.45:
            f = self.rng.choice([{"kinds": [1], "limit": 3}, {"#t": ["fuzz"], "limit": 0},
                                 {"ids": [_hex(self.rng, 32)]}, {"limit": 1}, {}])
            return 1, json.dumps(["REQ", sub, f]).encode()
        if r < 0.9:
            return 1, json.dumps(["CLOSE", sub]).encode()
        return 1, json.dumps(["CLOSE", "never-opened-" + str(self.rng.randrange(10**6))]).encode()

    def _mutated_event(self) -> tuple[int, bytes]:
        ev = dict(self.rng.choice(self.events))
        m = self.rng.randrange(14)
        if m == 0:  # bad signature
            s = ev["sig"]
            i = self.rng.randrange(128)
            ev["sig"] = s[:i] + ("0" if s[i] != "0" else "1") + s[i + 1:]
        elif m == 1:  # content changed: id mismatch
            ev["content"] += "!"
        elif m == 2:
            ev["id"] = _hex(self.rng, 32)
        elif m == 3:
            ev["pubkey"] = _hex(self.rng, 32)
        elif m == 4:
            ev[self.rng.choice(list(ev))] = self.rng.choice(
                [None, "1", 1.5, [], {}, True, -1, 2**70, "x" * 70])
        elif m == 5:
            del ev[self.rng.choice(list(ev))]
        elif m == 6:
            ev["extra"] = {"nested": [1, 2, 3]}
        elif m == 7:
            ev["tags"] = self.rng.choice([[["e"]], [[]], [[1, 2]], [["p", None]], "tags",
                                          [["t"] * 3000], [["e", "x" * 100000]]])
        elif m == 8:
            text = json.dumps(["EVENT", ev])
            return 1, text.replace('"kind"', '"kind": 1, "kind"', 1).encode()  # duplicate key
        elif m == 9:
            ev["sig"] = ev["sig"].upper()
        elif m == 10:
            ev["created_at"] = self.rng.choice([0, -5, 2**32, 2**31 - 1, 10**12])
        elif m == 11:
            return 1, json.dumps(["EVENT", ev, ev]).encode()
        elif m == 12:
            ev["tags"] = [["expiration", self.rng.choice(["soon", "-1", "1e9", "99999999999"])]]
        else:
            return 1, json.dumps(["EVENT", [ev]]).encode()
        return 1, json.dumps(["EVENT", ev]).encode()

    def _valid_event(self) -> tuple[int, bytes]:
        return 1, json.dumps(["EVENT", self.rng.choice(self.events)]).encode()

    def _filter(self) -> dict[str, Any]:
        bad: list[Any] = [None, "x", 1.5, -1, [], {}, [None], ["zz"], [1.5], ["A" * 64],
                          [_hex(self.rng, 32)[:7]], True, [2**70], "1" * 10, [-1]]
        key = self.rng.choice(["ids", "authors", "kinds", "#e", "#p", "#t", "since", "until",
                               "limit", "search", "#", "#tt", "", "unknown", "#E"])
        return {key: self.rng.choice(bad)}

    def _mutated_req(self) -> tuple[int, bytes]:
        r = self.rng.random()
        if r < 0.15:
            sub: Any = self.rng.choice(["", "x" * 65, 5, None, [], "é" * 40, "x" * 64])
            return 1, json.dumps(["REQ", sub, {}]).encode()
        if r < 0.25:
            return 1, json.dumps(["REQ", "r", self.rng.choice([[], "f", 1, None])]).encode()
        return 1, json.dumps(["REQ", f"r{self.rng.randrange(20)}", self._filter()]).encode()

    def _mutated_count(self) -> tuple[int, bytes]:
        if self.rng.random() < 0.3:
            return 1, json.dumps(["COUNT", "c", {"kinds": [1]}]).encode()
        return 1, json.dumps(["COUNT", f"c{self.rng.randrange(5)}", self._filter()]).encode()

    def _mutated_auth(self) -> tuple[int, bytes]:
        ev = dict(self.rng.choice(self.auth))
        m = self.rng.randrange(6)
        if m == 0:
            ev["tags"] = [["relay", "ws://elsewhere.example"], ["challenge", "nope"]]
        elif m == 1:
            ev["sig"] = "0" * 128
        elif m == 2:
            ev["kind"] = 1
        elif m == 3:
            ev["created_at"] = 0
        elif m == 4:
            return 1, json.dumps(["AUTH", "token"]).encode()
        return 1, json.dumps(["AUTH", ev]).encode()

    def _mutated_neg(self) -> tuple[int, bytes]:
        m = self.rng.randrange(10)
        sub = f"n{self.rng.randrange(12)}"
        init, rng = self.neg_init, self.rng
        msg: list[Any]
        if m == 0:
            msg = ["NEG-OPEN", sub, {}, init]
        elif m == 1:
            msg = ["NEG-OPEN", sub, {"kinds": [1]}, "6" + _hex(rng, 40)]
        elif m == 2:
            msg = ["NEG-OPEN", sub, self._filter(), init]
        elif m == 3:
            msg = ["NEG-OPEN", sub, {}, rng.choice(["", "6", "zz", 5, "62", "61" + "ff" * 9])]
        elif m == 4:
            msg = ["NEG-MSG", sub, "61" + _hex(rng, rng.randrange(0, 80))]
        elif m == 5:
            msg = ["NEG-MSG", sub, _hex(rng, rng.randrange(0, 40))]
        elif m == 6:
            msg = ["NEG-CLOSE", sub]
        elif m == 7:
            msg = ["NEG-OPEN", sub]
        elif m == 8:  # a valid varint stream with absurd values
            msg = ["NEG-MSG", sub, "61" + "ff" * 12 + "00" + "02" + "ff" * 8]
        else:
            msg = [rng.choice(["NEG-OPEN", "NEG-MSG", "NEG-ERR", "NEG-X"]),
                   rng.choice([None, 1, "", "x" * 100])]
        return 1, json.dumps(msg).encode()

    def _odd_arrays(self) -> tuple[int, bytes]:
        return 1, self.rng.choice([
            b"[]", b"{}", b'"EVENT"', b"null", b"1", b'["EVENT"]', b'["REQ"]', b'["CLOSE"]',
            b'["CLOSE",1]', b"[1,2]", b'["' + b"X" * 1000 + b'"]', b'["EVENT",null]',
            b'["COUNT"]', b'["AUTH"]', b'["AUTH",1,2]', b"", b" ", b'["OK","x",true,""]',
            b'["EOSE","x"]', b'["NOTICE","hi"]', b'\t["CLOSE","x"]\n', b'["REQ","x",{}]junk',
        ])

    def _odd_unicode(self) -> tuple[int, bytes]:
        s = self.rng.choice(SURROGATES)
        r = self.rng.randrange(6)
        if r == 0:
            return 1, f'["REQ","{s}",{{"limit":1}}]'.encode()
        if r == 1:
            return 1, f'["CLOSE","{s}"]'.encode()
        if r == 2:
            return 1, f'["REQ","u",{{"#t":["{s}"]}}]'.encode()
        if r == 3:
            return 1, f'["COUNT","{s}",{{"kinds":[1]}}]'.encode()
        if r == 4:
            ev = dict(self.rng.choice(self.events))
            text = json.dumps(["EVENT", ev], ensure_ascii=False)
            return 1, text.replace('"content": "', f'"content": "{s}', 1).encode()
        return 1, f'["NEG-OPEN","{s}",{{}},"{self.neg_init}"]'.encode()

    def _ws_violation(self) -> tuple[int, bytes]:
        return -self.rng.randrange(1, 6), b'["REQ","x",{}]'  # negative: see raw_frame


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (zero mask key), or a broken one for opcode <= 0."""
    n = len(payload)
    b0, mask = 0x80 | (opcode & 0x0F), 0x80
    if opcode < 0:
        kind = -opcode
        if kind == 1:
            b0 = 0x80 | 0x40 | 1  # RSV1 without an extension
        elif kind == 2:
            b0 = 0x80 | 3  # reserved opcode
        elif kind == 3:
            mask = 0  # unmasked client frame
            b0 = 0x81
        elif kind == 4:
            b0 = 0x80 | 9  # ping longer than 125 bytes
            payload = payload * 20
            n = len(payload)
        else:
            b0 = 0x80  # continuation with nothing to continue
    if n < 126:
        head = bytes([b0, mask | n])
    elif n < 65536:
        head = bytes([b0, mask | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mask | 127]) + n.to_bytes(8, "big")
    return head + (b"\x00\x00\x00\x00" if mask else b"") + payload


class Stats:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.close_codes: Counter[str] = Counter()
        self.reconnects = 0
        self.stalled = 0
        self.unexpected_open = 0  # a connection-closing frame the relay did not close on
        self.connect_failures = 0
        self.wait: Counter[str] = Counter()


class Link(RawWS):
    """One hostile connection: counts what the relay answers, notices when it closes."""

    def __init__(self, stats: Stats) -> None:
        super().__init__()
        self.stats = stats
        self.probe: tuple[str, asyncio.Future[None]] | None = None
        self.got_close = False
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=256 * 1024)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        if not self.got_close:
            self.stats.close_codes["no close frame (reset)"] += 1
        super().connection_lost(exc)

    def frames_received(self, buf: bytearray) -> None:
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, n = buf[pos], buf[pos + 1] & 0x7F
            at = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, at = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, at = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size < at + n:
                break
            op = b0 & 0x0F
            if op == 1:
                self._text(bytes(buf[at : at + min(n, 160)]))
            elif op == 8:
                self.got_close = True
                code = int.from_bytes(buf[at : at + 2], "big") if n >= 2 else 1005
                self.stats.close_codes[str(code)] += 1
                if self.transport is not None:
                    self.transport.close()
            elif op == 9 and self.transport is not None:
                self.transport.write(frame(0xA, bytes(buf[at : at + n])))
            pos = at + n
        del buf[:pos]

    def _text(self, head: bytes) -> None:
        end = head.find(b'"', 2)
        typ = head[2:end].decode(errors="replace") if end > 2 else "?"
        st = self.stats
        if typ == "OK":
            typ = "OK true" if b",true," in head[70:] else "OK false"
        st.answers[typ] += 1
        if typ in ("OK false", "NOTICE", "CLOSED", "NEG-ERR"):
            text = head.decode(errors="replace")
            reason = text.split('"')[-2] if typ == "NOTICE" else text.rsplit(',"', 1)[-1]
            st.reasons[f"{typ}: {reason[:48]}"] += 1
        probe = self.probe
        if probe is not None and typ in ("EOSE", "CLOSED") and head.find(probe[0].encode()) > 0:
            if not probe[1].done():
                probe[1].set_result(None)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def connect(url: str, stats: Stats, source: str | None = None) -> Link:
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    local = (source, 0) if source else None
    for attempt in range(50):
        try:
            _, link = await loop.create_connection(lambda: Link(stats), host, int(port),
                                                   local_addr=local)
            key = base64.b64encode(os.urandom(16)).decode()
            link.send(f"GET / HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            await asyncio.wait_for(link.handshaken, 20)
            return link
        except (OSError, ConnectionError, TimeoutError):
            stats.connect_failures += 1
            await asyncio.sleep(min(2.0, 0.05 * (attempt + 1)))
    raise ConnectionError(f"cannot connect to {url}")


async def hostile(url: str, pool: Pool, rng: random.Random, quota: int, batch: int,
                  probe_every: int, stats: Stats, counter: list[int],
                  source: str | None) -> None:
    items = pool.items
    link = await connect(url, stats, source)
    batches = 0
    subst = b'[]{}",:0123456789abcdef-.eE nultrEVN\\'
    while counter[0] < quota:
        parts = []
        closing = False
        for _ in range(batch):
            name, opcode, payload, closes, ascii_ok = items[rng.randrange(len(items))]
            if ascii_ok and payload and rng.random() < 0.5:  # cheap mutation
                b = bytearray(payload)
                for _ in range(rng.randrange(1, 4)):
                    b[rng.randrange(len(b))] = subst[rng.randrange(len(subst))]
                payload = bytes(b)
                name += "+mutated"
            parts.append(frame(opcode, payload))
            stats.sent[name] += 1
            counter[0] += 1
            if closes:
                closing = True
                break
        link.send(b"".join(parts))
        batches += 1
        tw = time.perf_counter()
        await link.can_write.wait()
        stats.wait["write"] += time.perf_counter() - tw
        tw = time.perf_counter()
        if closing:
            try:
                await asyncio.wait_for(asyncio.shield(link.closed), 10)
            except TimeoutError:
                stats.unexpected_open += 1
                if link.transport is not None:
                    link.transport.abort()
            stats.wait["closing"] += time.perf_counter() - tw
        elif batches % probe_every == 0 and not link.closed.done():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            probe_id = f"probe-{id(link)}-{batches}"
            link.probe = (probe_id, fut)
            link.send(frame(1, json.dumps(["REQ", probe_id, {"ids": ["0" * 64]}]).encode()))
            try:
                await asyncio.wait_for(asyncio.shield(fut), 15)
            except TimeoutError:
                if not link.closed.done():
                    stats.stalled += 1
                    if link.transport is not None:
                        link.transport.abort()
            link.send(frame(1, json.dumps(["CLOSE", probe_id]).encode()))
            link.probe = None
            stats.wait["probe"] += time.perf_counter() - tw
        if link.closed.done():
            stats.reconnects += 1
            tw = time.perf_counter()
            link = await connect(url, stats, source)
            stats.wait["connect"] += time.perf_counter() - tw
    if link.transport is not None:
        link.transport.close()


async def run(a: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(a.seed)
    t0 = time.perf_counter()
    pool = Pool(rng, a.pool, a.max_message, "no-challenge", a.url,
                a.only.split(",") if a.only else None)
    built = time.perf_counter() - t0
    stats = Stats()
    counter = [0]
    t1 = time.perf_counter()
    await asyncio.gather(*[
        hostile(a.url, pool, random.Random(a.seed * 1000 + i), a.frames, a.batch, a.probe_every,
                stats, counter, f"127.0.0.{2 + i % a.source_ips}" if a.source_ips else None)
        for i in range(a.conns)
    ])
    elapsed = time.perf_counter() - t1
    return {
        "frames": counter[0],
        "elapsed_s": elapsed,
        "frames_per_s": counter[0] / elapsed if elapsed else 0.0,
        "pool_templates": len(pool.items),
        "pool_build_s": built,
        "sent_by_category": dict(stats.sent.most_common()),
        "answers": dict(stats.answers.most_common()),
        "top_reasons": dict(stats.reasons.most_common(40)),
        "close_codes": dict(stats.close_codes.most_common()),
        "reconnects": stats.reconnects,
        "stalled_connections": stats.stalled,
        "closing_frame_left_open": stats.unexpected_open,
        "connect_failures": stats.connect_failures,
        "wait_s": dict(stats.wait),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--conns", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--probe-every", type=int, default=50)
    ap.add_argument("--pool", type=int, default=30000)
    ap.add_argument("--max-message", type=int, default=262144)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="comma-separated categories (debugging)")
    ap.add_argument("--source-ips", type=int, default=0, help="connect from this many "
                    "loopback addresses 127.0.0.2... (per-IP limits apply to each), "
                    "0: the default source")
    a = ap.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(run(a))) + "\n")


if __name__ == "__main__":
    main()
