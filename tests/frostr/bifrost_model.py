"""A model of a bifrost 2.x responder, written from ``shared/frostr/PROTOCOL.md`` (not from
bifrost's code), for tests of how oa-node holders get along with it over time.

What it models is the pool behaviour that matters: nonce pools in memory only (a restart
forgets them); fresh nonces (50) go to a peer in a ping request or reply, or in a sign
response's ``replenish``, only when the model counts fewer than 20 of its nonces in that
peer's hands, and they count as delivered the moment they are sent; a sign request naming a
code it does not have gets no answer at all (bifrost sends no reject); on start it pings
every member with a fresh batch (counted once that ping is answered: a member that was
offline then gets its batch when it pings the model). It answers ``ping`` and ``sign``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import anyio
from anyio.abc import TaskStatus

from oa_node.client import RelayPool
from oa_node.nostr import nip44
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.plugins.frostr import protocol
from oa_node.plugins.frostr.encoding import GroupPackage, SharePackage
from oa_node.plugins.frostr.frost import SigningSession
from oa_node.plugins.frostr.protocol import NonceCommit, Ping, SignResponse, SignSession
from oa_node.plugins.frostr.suite import BIFROST

log = logging.getLogger("bifrost-model")
MIN_THRESHOLD, REPLENISH_COUNT = 20, 50


class BifrostModel:
    def __init__(self, group: GroupPackage, share: SharePackage, url: str) -> None:
        self.group, self.share, self.url = group, share, url
        self.pubkey = share.public_key
        self.members = {k: i for i, k in group.member_keys.items() if k != self.pubkey}
        self.outgoing: dict[str, OrderedDict[bytes, None]] = {}  # in memory only
        self.incoming: dict[str, list[NonceCommit]] = {}
        self.stats = {"pings": 0, "signs": 0, "ignored": 0, "sent_nonces": 0}
        self._pool: RelayPool | None = None
        self._startup: dict[str, tuple[str, list[NonceCommit]]] = {}

    def _fresh(self, peer: str, count: bool = True) -> list[NonceCommit]:
        pool = self.outgoing.setdefault(peer, OrderedDict())
        if len(pool) >= MIN_THRESHOLD:
            return []
        fresh = [NonceCommit.create(self.share.secret_bytes) for _ in range(REPLENISH_COUNT)]
        if count:
            self._count(peer, fresh)
        return fresh

    def _count(self, peer: str, fresh: list[NonceCommit]) -> None:
        pool = self.outgoing.setdefault(peer, OrderedDict())
        for n in fresh:
            pool[n.code] = None  # counted as delivered on send
        while len(pool) > protocol.POOL_SIZE:
            pool.popitem(last=False)
        self.stats["sent_nonces"] += len(fresh)

    async def _startup_ping(self, peer: str) -> None:
        fresh = self._fresh(peer, count=False)
        env = protocol.request("ping", Ping(fresh).request_json())
        self._startup[env.id] = (peer, fresh)
        await self._send(peer, env.to_json())

    async def _send(self, peer: str, text: str) -> None:
        assert self._pool is not None
        key = nip44.get_conversation_key(self.share.secret_bytes, peer)
        ev = sign_event(EventTemplate(kind=protocol.RPC_KIND, tags=[["p", peer]],
                                      content=nip44.encrypt(text, key)),
                        self.share.secret_bytes)
        await self._pool.publish(ev)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._pool = pool = RelayPool([self.url])
        try:
            await pool.connect(10)
            flt = {"authors": list(self.group.member_keys.values()),
                   "kinds": [protocol.RPC_KIND]}
            async with pool.subscribe(flt) as sub, anyio.create_task_group() as tg:
                await sub.wait_eose(10)
                for peer in self.members:  # a fresh start: ping everyone with nonces
                    tg.start_soon(self._startup_ping, peer)
                task_status.started()
                async for _url, ev in sub:
                    tg.start_soon(self._handle, ev)
        finally:
            with anyio.CancelScope(shield=True):
                await pool.close()

    async def _handle(self, ev: Event) -> None:
        if ev.pubkey not in self.members or ev.tags != [["p", self.pubkey]]:
            return
        key = nip44.get_conversation_key(self.share.secret_bytes, ev.pubkey)
        try:
            env = protocol.parse_envelope(protocol.decrypt_content(ev.content, key))
        except protocol.WireError:
            return
        if env.type == "accept" and isinstance(env.data, dict):  # replies to its own pings
            started = self._startup.pop(env.id, None)
            if started is not None and started[0] == ev.pubkey:
                self._count(ev.pubkey, started[1])
            self.incoming.setdefault(ev.pubkey, []).extend(
                protocol.parse_nonce_list(env.data.get("nonces"), "nonces"))
            return
        if env.type != "request":
            return
        if env.method == "ping":
            self.stats["pings"] += 1
            req = Ping.parse_request(env.params[0] if env.params else "")
            self.incoming.setdefault(ev.pubkey, []).extend(req.nonces)
            reply = Ping(self._fresh(ev.pubkey)).reply_json()
            await self._send(ev.pubkey, protocol.accept(env.id, reply).to_json())
        elif env.method == "sign":
            session = SignSession.from_json(protocol._json(env.params[0], "session"))
            mine = session.nonce_for(self.share.idx)
            pool = self.outgoing.get(ev.pubkey, OrderedDict())
            if mine.code not in pool:
                self.stats["ignored"] += 1  # bifrost: no reject, the requester times out
                return
            del pool[mine.code]
            sighash = bytes.fromhex(session.hashes[0][0])
            fs = SigningSession(BIFROST, self.group.group_pk, session.commitments(), sighash)
            z = fs.sign(self.share.idx, self.share.seckey,
                        protocol.derive_nonce(self.share.secret_bytes, mine.code))
            self.stats["signs"] += 1
            resp = SignResponse(self.share.idx, [(sighash, z)], self.share.public, session.sid,
                                mine.code, self._fresh(ev.pubkey))
            await self._send(ev.pubkey, protocol.accept(env.id, resp.to_json()).to_json())
