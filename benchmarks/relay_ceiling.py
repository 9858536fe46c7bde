"""The ceiling for benchmarks/relay.py: the least a Python relay can do, and no more.

    python benchmarks/relay_ceiling.py PORT

Not a relay anyone should run: it verifies every event (BIP-340 with the same code as
oa-node), keeps it in a list in memory (no storage, no durability, no deletions, no
replaceable events, no limits), answers a REQ by scanning the list newest first, and
pushes new events to matching live subscriptions. Same websockets library, same event
loop, same process model as the relay under test, so the ratio of the relay's figures to
this one's says how much of what Python allows the relay keeps.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Ceiling:
    def __init__(self) -> None:
        # (created_at, id, event, raw) kept sorted oldest first; scanned from the end
        self.events: list[tuple[int, str, Event, str]] = []
        self.ids: set[str] = set()
        self.subs: dict[tuple[ServerConnection, str], list[Filter]] = {}

    async def handler(self, ws: ServerConnection) -> None:
        try:
            async for text in ws:
                if isinstance(text, bytes):
                    continue
                try:
                    msg = json.loads(text)
                    await self.dispatch(ws, msg)
                except (ValueError, ProtocolError, KeyError, TypeError, IndexError) as exc:
                    await ws.send(_dumps(["NOTICE", f"invalid: {exc}"]))
        except ConnectionClosed:
            pass
        finally:
            for key in [k for k in self.subs if k[0] is ws]:
                del self.subs[key]

    async def dispatch(self, ws: ServerConnection, msg: list) -> None:
        verb = msg[0]
        if verb == "EVENT":
            await self.on_event(ws, msg[1])
        elif verb == "REQ":
            sub_id, filters = msg[1], [Filter.from_dict(f) for f in msg[2:]]
            self.subs[(ws, sub_id)] = filters
            prefix = '["EVENT",' + _dumps(sub_id) + ","
            for raw in self.query(filters):
                await ws.send(prefix + raw + "]")
            await ws.send(_dumps(["EOSE", sub_id]))
        elif verb == "CLOSE":
            self.subs.pop((ws, msg[1]), None)

    async def on_event(self, ws: ServerConnection, obj: dict) -> None:
        event = Event.from_dict(obj)
        if event.id in self.ids:
            await ws.send(_dumps(["OK", event.id, True, "duplicate: already have this event"]))
            return
        if not event.verify():
            await ws.send(_dumps(["OK", event.id, False, "invalid: bad signature"]))
            return
        raw = event.to_json()
        self.ids.add(event.id)
        bisect.insort(self.events, (event.created_at, event.id, event, raw),
                      key=lambda r: (r[0], r[1]))
        await ws.send(_dumps(["OK", event.id, True, ""]))
        for (conn, sub_id), filters in list(self.subs.items()):
            if any(f.matches(event) for f in filters):
                try:
                    await conn.send('["EVENT",' + _dumps(sub_id) + "," + raw + "]")
                except ConnectionClosed:
                    pass

    def query(self, filters: list[Filter]) -> list[str]:
        out: list[str] = []
        for f in filters:
            limit = f.limit if f.limit is not None else 500
            n = 0
            for _, _, event, raw in reversed(self.events):
                if n >= limit:
                    break
                if f.matches(event):
                    out.append(raw)
                    n += 1
        return out


async def main(port: int) -> None:
    relay = Ceiling()
    async with serve(relay.handler, "127.0.0.1", port, compression=None, max_size=262144):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
