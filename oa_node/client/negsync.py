"""Reconcile two relays with NIP-77 (negentropy), then copy what each one lacks.

The local relay's events (under the filter) are read with paginated REQs; the remote is
only asked for the differences: NIP-77 finds them, then a REQ by ids (in batches) fetches
what we need and EVENTs publish what it lacks. Bytes exchanged with the remote are counted,
split into the reconciliation itself and the events copied. Every frame from either relay
is hostile: events are checked (id, signature, asked for) before they are passed on.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from oa_node.client.errors import ClientError
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.negentropy import Negentropy, NegentropyError, Storage

#: Our negentropy messages stay under this (bytes; hex doubles it) so any relay takes them.
FRAME_LIMIT = 60_000
#: Ids per REQ when fetching, events per page when reading the local relay.
ID_BATCH = 500
PAGE = 1000
MAX_ROUNDS = 1000
#: More differences than this and a sync is refused (a hostile remote cannot fill memory).
MAX_DIFFERENCES = 2_000_000

DIRECTIONS = ("down", "up", "both")


@dataclass
class SyncResult:
    """What a sync found and did; ``*_bytes`` are websocket text bytes with the remote."""

    local_count: int = 0
    have: int = 0  # ids the remote lacks
    need: int = 0  # ids we lack
    rounds: int = 0
    neg_bytes: int = 0
    fetched: int = 0
    stored_locally: int = 0
    published: int = 0
    refused: list[str] = field(default_factory=list)
    transfer_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # read_local, reconcile, copy

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["refused"] = self.refused[:20]
        d["refused_count"] = len(self.refused)
        return d


class _Link:
    """A raw websocket to one relay that counts the bytes both ways."""

    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.sent = 0
        self.received = 0

    async def send(self, *msg: Any) -> None:
        text = json.dumps(list(msg), separators=(",", ":"), ensure_ascii=False)
        self.sent += len(text.encode())
        await self.ws.send(text)

    async def send_text(self, text: str) -> None:
        self.sent += len(text.encode())
        await self.ws.send(text)

    async def recv(self) -> list[Any]:
        """The next array frame (AUTH challenges and NOTICEs skipped)."""
        while True:
            try:
                text = await asyncio.wait_for(self.ws.recv(), self.timeout)
            except TimeoutError:
                raise ClientError(f"no answer within {self.timeout:g}s") from None
            self.received += len(text.encode() if isinstance(text, str) else text)
            try:
                msg = json.loads(text)
            except ValueError:
                continue
            if isinstance(msg, list) and msg and msg[0] not in ("AUTH", "NOTICE"):
                return msg

    @property
    def total(self) -> int:
        return self.sent + self.received


async def _open(url: str, timeout: float) -> _Link:
    try:
        ws = await connect(url, open_timeout=timeout, compression=None, max_size=2**24)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClientError(f"{url}: cannot connect: {exc}") from None
    except Exception as exc:  # websockets' handshake errors
        raise ClientError(f"{url}: cannot connect: {exc}") from None
    return _Link(ws, timeout)


def _event(obj: Any) -> Event | None:
    """A verified event, or None for anything that is not one."""
    try:
        ev = Event.from_dict(obj)
    except (ProtocolError, ValueError, TypeError, KeyError):
        return None
    return ev if ev.verify() else None


async def _read_local(link: _Link, filt: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """id -> (created_at, raw JSON) of every local event under ``filt``, paged by ``until``.

    Our own relay verified these on the way in: only their shape is checked here.
    """
    out: dict[str, tuple[int, str]] = {}
    until: int | None = filt.get("until")
    while until is None or until >= 0:
        page = dict(filt, limit=PAGE)
        if until is not None:
            page["until"] = until
        await link.send("REQ", "oa-sync-local", page)
        count = fresh = 0
        oldest: int | None = None
        while True:
            msg = await link.recv()
            if msg[0] == "EOSE":
                break
            if msg[0] == "CLOSED":
                raise ClientError(f"local relay refused the filter: {str(msg[-1])[:200]}")
            if msg[0] != "EVENT" or len(msg) < 3:
                continue
            try:
                ev = Event.from_dict(msg[2])
            except (ProtocolError, ValueError, TypeError, KeyError):
                continue
            count += 1
            oldest = ev.created_at if oldest is None else min(oldest, ev.created_at)
            if ev.id not in out:
                out[ev.id] = (ev.created_at, json.dumps(msg[2], separators=(",", ":")))
                fresh += 1
        await link.send("CLOSE", "oa-sync-local")
        if count == 0 or oldest is None:
            break
        # The oldest second may go on in the next page, so ask from it again (repeats are
        # skipped); a page with nothing new moves past it.
        until = oldest if fresh else oldest - 1
    return out


async def _reconcile(link: _Link, filt: dict[str, Any], storage: Storage, res: SyncResult
                     ) -> tuple[list[bytes], list[bytes]]:
    neg = Negentropy(storage, FRAME_LIMIT)
    have: list[bytes] = []
    need: list[bytes] = []
    before = link.total
    await link.send("NEG-OPEN", "oa-sync", filt, neg.initiate().hex())
    for _ in range(MAX_ROUNDS):
        try:
            msg = await link.recv()
        except ClientError as exc:
            if res.rounds:
                raise
            raise ClientError(f"remote: {exc} to NEG-OPEN (does it support NIP-77?)") from None
        if msg[0] == "NEG-ERR":
            raise ClientError(f"remote refused the sync: {str(msg[-1])[:200]}")
        if msg[0] != "NEG-MSG" or len(msg) != 3 or msg[1] != "oa-sync":
            if msg[0] in ("CLOSED", "OK", "EVENT", "EOSE"):
                continue
            raise ClientError(f"remote does not speak NIP-77 (answered {str(msg[0])[:32]!r})")
        res.rounds += 1
        try:
            nxt, h, n = neg.reconcile(bytes.fromhex(msg[2]))
        except (ValueError, TypeError, NegentropyError) as exc:
            raise ClientError(f"remote sent a bad negentropy message: {exc}") from None
        have += h
        need += n
        if len(have) + len(need) > MAX_DIFFERENCES:
            raise ClientError(f"more than {MAX_DIFFERENCES} differences: narrow the filter")
        if nxt is None:
            await link.send("NEG-CLOSE", "oa-sync")
            res.neg_bytes = link.total - before
            return have, need
        await link.send("NEG-MSG", "oa-sync", nxt.hex())
    raise ClientError(f"no convergence after {MAX_ROUNDS} rounds")


async def _fetch(link: _Link, ids: list[str], res: SyncResult) -> list[str]:
    """Raw JSON of the wanted events, by id in batches; anything else is dropped."""
    wanted = set(ids)
    raws: list[str] = []
    for i in range(0, len(ids), ID_BATCH):
        batch = ids[i : i + ID_BATCH]
        await link.send("REQ", "oa-sync-get", {"ids": batch, "limit": len(batch)})
        while True:
            msg = await link.recv()
            if msg[0] in ("EOSE", "CLOSED"):
                break
            if msg[0] != "EVENT" or len(msg) < 3:
                continue
            ev = _event(msg[2])
            if ev is not None and ev.id in wanted:
                wanted.discard(ev.id)
                raws.append(json.dumps(msg[2], separators=(",", ":")))
        await link.send("CLOSE", "oa-sync-get")
    res.fetched = len(raws)
    return raws


async def _publish(link: _Link, raws: list[str], res: SyncResult) -> int:
    """Send EVENTs (pipelined by batch) and count the OK trues."""
    ok = 0
    for i in range(0, len(raws), ID_BATCH):
        batch = raws[i : i + ID_BATCH]
        pending = set()
        for raw in batch:
            pending.add(json.loads(raw)["id"])
            await link.send_text('["EVENT",' + raw + "]")
        while pending:
            msg = await link.recv()
            if msg[0] != "OK" or len(msg) < 4 or msg[1] not in pending:
                continue
            pending.discard(msg[1])
            if msg[2] is True:
                ok += 1
            else:
                res.refused.append(f"{msg[1]}: {str(msg[3])[:120]}")
    return ok


async def sync(local_url: str, remote_url: str, filt: dict[str, Any], direction: str,
               timeout: float = 30.0) -> SyncResult:
    """Reconcile ``local_url`` with ``remote_url`` under ``filt`` and copy per ``direction``."""
    if direction not in DIRECTIONS:
        raise ClientError(f"direction must be one of {', '.join(DIRECTIONS)}")
    if "limit" in filt:
        raise ClientError("a sync filter cannot have a limit (it would differ per relay)")
    res = SyncResult()
    local = await _open(local_url, timeout)
    try:
        remote = await _open(remote_url, timeout)
        try:
            t0 = time.perf_counter()
            records = await _read_local(local, filt)
            res.local_count = len(records)
            storage = Storage((ts, bytes.fromhex(eid)) for eid, (ts, _) in records.items())
            t1 = time.perf_counter()
            have, need = await _reconcile(remote, filt, storage, res)
            res.have, res.need = len(have), len(need)
            t2 = time.perf_counter()
            start = remote.total
            if direction in ("down", "both") and need:
                raws = await _fetch(remote, [x.hex() for x in need], res)
                res.stored_locally = await _publish(local, raws, res)
            if direction in ("up", "both") and have:
                ups = [records[x.hex()][1] for x in have if x.hex() in records]
                res.published = await _publish(remote, ups, res)
            res.transfer_bytes = remote.total - start
            res.seconds = {"read_local": round(t1 - t0, 3), "reconcile": round(t2 - t1, 3),
                           "copy": round(time.perf_counter() - t2, 3)}
        finally:
            await remote.ws.close()
    finally:
        await local.ws.close()
    return res
