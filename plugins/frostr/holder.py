"""A share holder on Nostr: answers its peers, and asks them to sign and to do ECDH.

One :class:`FrostHolder` per share. It talks over kind-20000 events authored by its share
key, one ``p`` tag each, NIP-44 encrypted (bifrost 2.x wire format, see ``protocol.py``).
Where bifrost is lax this holder is strict, without changing the wire:

- a refused request gets a ``reject`` envelope (bifrost lets the requester time out);
- the policy runs before every partial signature; sessions are checked (gid, sid, members,
  one sighash and no tweaks: a nonce never signs two messages);
- a nonce code is destroyed before the partial signature that uses it is computed, so a
  replayed request finds no nonce and is refused;
- every partial signature is verified as a full point, a bad one names its sender, who is
  left out of later sessions; the aggregate is verified before it is returned;
- the requester never sends its own ECDH keyshare (the ``keyshare`` field carries the
  public peer point, which reveals nothing); responders ignore that field.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from oa_node.client import ClientError, RelayPool
from oa_node.errors import UserError
from oa_node.nostr import nip44
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.plugins.frostr import frost, protocol
from oa_node.plugins.frostr.asking import (
    STALE_NONCE_REASON,
    Asking,
    FrostUnavailable,
    NotSent,
    PeerRejected,
    PeerState,
    SignResult,
    nip44_conversation_key_from_x,
)
from oa_node.plugins.frostr.encoding import GroupPackage, SharePackage, check_share
from oa_node.plugins.frostr.frost import FrostError, SigningSession
from oa_node.plugins.frostr.policy import Policy, SignRequest, event_from_content
from oa_node.plugins.frostr.protocol import (
    EcdhPackage,
    Envelope,
    NonceCommit,
    NoncePools,
    Ping,
    SignResponse,
    SignSession,
    WireError,
)
from oa_node.plugins.frostr.suite import BIFROST
from oa_node.signer import LocalSigner

__all__ = ["FrostHolder", "FrostUnavailable", "NotSent", "PeerRejected", "PeerState",
           "SignResult", "nip44_conversation_key_from_x"]

log = logging.getLogger("oa_node.frostr")

MAX_EVENT_AGE = 120  # seconds: older requests are replays from a relay that stores kind 20000
_SEEN_MAX = 10_000
_LATE_MAX = 1000
#: seconds after which our unanswered ping to a peer that pings us is taken as lost
LOST_PING_AFTER = 1.0


class FrostHolder(Asking):
    """Runs one share: ``async with holder.running(): ...`` or ``await holder.run()``."""

    def __init__(
        self,
        group: GroupPackage,
        share: SharePackage,
        relays: Iterable[str],
        *,
        peers: Iterable[str] | None = None,
        policy: Policy | None = None,
        request_timeout: float = 10.0,
        sign_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        ping_on_start: bool = True,
        pools: NoncePools | None = None,
        open_pools: Callable[[], NoncePools] | None = None,
    ) -> None:
        check_share(group, share)
        self.group = group
        self.share = share
        self.idx = share.idx
        self.pubkey = share.public_key
        self.relays = list(relays)
        if not self.relays:
            raise UserError("frostr: no relays configured for the share holder")
        self.policy = policy or Policy()
        self.request_timeout = request_timeout
        self.sign_timeout = sign_timeout
        self.connect_timeout = connect_timeout
        self.ping_on_start = ping_on_start
        self.suite = BIFROST
        allowed = set(peers) if peers else None
        self.peers: dict[str, PeerState] = {}
        for i, key in group.member_keys.items():
            if key == self.pubkey or (allowed is not None and key not in allowed):
                continue
            self.peers[key] = PeerState(i, key)
        #: journalled pools (``noncestore``) survive a restart; in memory otherwise.
        #: ``open_pools`` opens (and locks) them when the holder starts to run, so merely
        #: building a holder (any command reading the config) takes no lock.
        self.pools = pools or NoncePools(share.secret_bytes)
        self._open_pools = open_pools
        self.cheaters: set[int] = set()
        #: whether the plugins' ``register_frost_policies`` checks are in ``policy.checks``
        self.plugin_checks_loaded = False
        self.stats: dict[str, int] = {"answered": 0, "rejected": 0, "dropped": 0, "sent": 0,
                                      "requests": 0}
        self._signer = LocalSigner(share.secret_bytes)
        self._conv: dict[str, bytes] = {}
        self._pending: dict[str, tuple[str, Any]] = {}
        #: requests given up on: a late accept still carries nonces worth keeping
        self._late: OrderedDict[str, tuple[str, str]] = OrderedDict()
        #: peers whose last ping reply had no nonces although this holder holds none of
        #: theirs (they believe it still does): warned about once
        self._starved: dict[str, float | None] = {}
        self._pinging: dict[str, tuple[anyio.Event, list[Any]]] = {}
        self._ping_started: dict[str, float] = {}
        #: the maintenance loop's per-peer backoff and next ping time
        self._backoff: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._wake = anyio.Event()
        #: set (and replaced) whenever a peer's nonces arrive
        self._nonces_arrived = anyio.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ecdh_cache: OrderedDict[str, bytes] = OrderedDict()
        self._pool: RelayPool | None = None
        self._tg: TaskGroup | None = None
        self._ready = anyio.Event()
        self._stopped = False
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._stopped

    async def wait_ready(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._ready.wait()
        if not self.ready:
            raise FrostUnavailable("frostr: the share holder is not running (is the frostr "
                                   "service enabled?)")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe and answer peers until cancelled (once per holder: its nonce
        file is closed at the end, and pools no longer journalled must never sign again)."""
        if self._closed:
            raise RuntimeError("this share holder ran already; build a new one to run again")
        if self._open_pools is not None:
            self.pools = self._open_pools()
            self._open_pools = None
        pool = RelayPool(self.relays, signer=self._signer)
        self._pool = pool
        try:
            errors = await pool.connect(self.connect_timeout)
            for url, err in errors.items():
                if err:
                    log.warning("frostr: relay %s: %s (will retry)", url, err)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._listen, pool)
                if self.ping_on_start:  # trade nonces early so the first signature is fast,
                    tg.start_soon(self._maintain)  # and keep the pools stocked
                self._ready.set()
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._stopped = True
            self._fail_pending("holder stopped")
            with anyio.CancelScope(shield=True):
                await pool.close()
            self.close()

    def close(self) -> None:
        """Release the nonce file (its lock) so the share can run again (in a new holder)."""
        self._closed = True
        journal = self.pools.journal
        if journal is not None and hasattr(journal, "close"):
            journal.close()
        self.pools.journal = None

    async def _listen(self, pool: RelayPool) -> None:
        authors = [self.pubkey, *self.peers]
        while True:
            flt = {"authors": authors, "kinds": [protocol.RPC_KIND], "#p": [self.pubkey],
                   "since": int(time.time()) - MAX_EVENT_AGE}
            async with pool.subscribe(flt) as sub:
                if await sub.wait_eose(self.connect_timeout):
                    log.info("frostr: holder %d ready on %d relay(s)", self.idx,
                             len(self.relays))
                async for _relay, event in sub:
                    self._tg.start_soon(self._handle_event, event)  # type: ignore[union-attr]
            log.warning("frostr: every relay closed the subscription; resubscribing")
            await anyio.sleep(1.0)

    # --- transport ------------------------------------------------------------------------

    def _conversation_key(self, peer: str) -> bytes:
        key = self._conv.get(peer)
        if key is None:
            key = self._conv[peer] = nip44.get_conversation_key(self.share.secret_bytes, peer)
        return key

    async def _send(self, peer: str, env: Envelope) -> None:
        if self._pool is None:
            raise FrostUnavailable("frostr: the share holder is not running")
        content = protocol.encrypt_content(env.to_json(), self._conversation_key(peer))
        event = sign_event(EventTemplate(kind=protocol.RPC_KIND, content=content,
                                         tags=[["p", peer]]), self.share.secret_bytes)
        self.stats["sent"] += 1
        if env.type == "request":
            self.stats["requests"] += 1
        result = await self._pool.publish(event, timeout=self.request_timeout)
        if not result.ok:
            raise NotSent(f"no relay accepted the message: {result.rejected}")

    async def request(self, peer: str, method: str, param: str,
                      timeout: float | None = None) -> Any:
        """One raw RPC to a peer: the accept ``data``; PeerRejected or TimeoutError."""
        if peer not in self.peers:
            raise UserError(f"{peer} is not a peer of this holder")
        return await self._request(peer, protocol.request(method, param),
                                   timeout or self.request_timeout)

    async def _request(self, peer: str, env: Envelope, timeout: float) -> Any:
        """Send a request and wait for the peer's accept ``data``; PeerRejected or
        TimeoutError otherwise."""
        send, receive = anyio.create_memory_object_stream[Envelope](1)
        self._pending[env.id] = (peer, send)
        answered = False
        try:
            with anyio.fail_after(timeout):
                await self._send(peer, env)
                reply = await receive.receive()
                answered = True
        finally:
            self._pending.pop(env.id, None)
            send.close()
            receive.close()
            if not answered and env.method in ("ping", "sign"):
                self._late[env.id] = (peer, env.method)
                if len(self._late) > _LATE_MAX:
                    self._late.popitem(last=False)
        if reply.type == "reject":
            raise PeerRejected(peer, reply.reason or "")
        return reply.data

    def _fail_pending(self, reason: str) -> None:
        for _peer, send in list(self._pending.values()):
            try:
                send.send_nowait(protocol.reject("", reason))
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

    def _remember(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    async def _handle_event(self, event: Event) -> None:
        """Everything from the relay passes here; a bad message never ends the holder."""
        try:
            await self._dispatch(event)
        except (WireError, FrostError, ValueError) as exc:
            self.stats["dropped"] += 1
            log.info("frostr: dropped message %s from %s: %s", event.id[:12],
                     event.pubkey[:12], exc)
        except ClientError as exc:
            log.warning("frostr: could not answer %s: %s", event.pubkey[:12], exc)
        except Exception:  # a bug met by one message must not end the holder's task group
            self.stats["dropped"] += 1
            log.exception("frostr: unexpected error on message %s from %s", event.id[:12],
                          event.pubkey[:12])

    async def _dispatch(self, event: Event) -> None:
        if not self._remember(event.id):
            return
        peer = self.peers.get(event.pubkey)
        if peer is None or event.kind != protocol.RPC_KIND:
            return  # our own echo, or a key outside the group (or not an allowed peer)
        if [t for t in event.tags if t and t[0] == "p"] != [["p", self.pubkey]]:
            return
        if event.created_at < time.time() - MAX_EVENT_AGE:
            return  # a stored request replayed by a relay: its requester gave up long ago
        env = protocol.parse_envelope(protocol.decrypt_content(
            event.content, self._conversation_key(event.pubkey)))
        peer.last_seen = time.monotonic()
        if self._due.get(event.pubkey, 0.0) > peer.last_seen:
            self._due[event.pubkey] = 0.0  # it is up: the maintenance loop may ping it now
            self._wake.set()
        if env.type in ("accept", "reject"):
            pending = self._pending.get(env.id)
            if pending is not None and pending[0] == event.pubkey:
                try:
                    pending[1].send_nowait(env)
                except (anyio.WouldBlock, anyio.ClosedResourceError,
                        anyio.BrokenResourceError):
                    pass
            elif env.type == "accept":
                self._late_accept(event.pubkey, env)
            return
        try:
            data, fresh = self._answer(peer, env)
        except (WireError, FrostError, ValueError) as exc:
            self.stats["rejected"] += 1
            log.info("frostr: refused %s from member %d: %s", env.method, peer.idx, exc)
            await self._send(event.pubkey, protocol.reject(env.id, str(exc)))
            return
        self.stats["answered"] += 1
        try:
            await self._send(event.pubkey, protocol.accept(env.id, data))
        except NotSent:
            self.pools.discard(peer.pubkey, (n.code for n in fresh))
            raise
        # the peer is waiting for this answer and the relay has it: the nonces count now
        self.pools.confirm(peer.pubkey, (n.code for n in fresh))

    def _late_accept(self, peer: str, env: Envelope) -> None:
        """An answer after its request timed out: keep the nonces it carries (the peer
        counts them as ours; dropping them would leave its view too high)."""
        late = self._late.pop(env.id, None)
        if late is None or late[0] != peer:
            return
        try:
            if late[1] == "ping":
                self._received_nonces(peer, Ping.parse_reply(env.data).nonces)
            else:
                self._received_nonces(peer, SignResponse.from_json(env.data).replenish)
        except WireError:
            return

    def _received_nonces(self, peer: str, nonces: list[NonceCommit]) -> None:
        if nonces:
            self._starved.pop(peer, None)
            self.pools.add_incoming(peer, nonces)
            self._nonces_arrived.set()
            self._nonces_arrived = anyio.Event()

    # --- answering peers ----------------------------------------------------------------------

    def _answer(self, peer: PeerState, env: Envelope) -> tuple[Any, list[NonceCommit]]:
        """The accept ``data`` and the fresh nonces in it (they count once it is sent)."""
        param = env.params[0] if env.params else ""
        if env.method == "ping":
            ping = Ping.parse_request(param)
            if (ping.nonces and self.pools.incoming_count(peer.pubkey)
                    >= protocol.MIN_THRESHOLD):
                # It sends nonces only when it counts fewer than MIN_THRESHOLD in our hands,
                # and we hold more: it lost its pools (a restart). Ours of its are stale,
                # and it no longer has ours.
                log.info("frostr: member %d lost its nonce pools (restart?); starting over "
                         "with it", peer.idx)
                self.pools.forget(peer.pubkey)
            self._received_nonces(peer.pubkey, ping.nonces)
            started = self._ping_started.get(peer.pubkey)
            if started is not None and time.monotonic() - started > LOST_PING_AFTER:
                # Our ping to it is unanswered long after a round trip while it is clearly
                # up: it was sent before the peer listened. Its batch is void; send one now.
                self.pools.discard(peer.pubkey, self.pools.pending_codes(peer.pubkey))
            fresh = self._refill(peer.pubkey)
            return Ping(fresh, policy={"send": True, "recv": True}).reply_json(), fresh
        if env.method == "sign":
            return self._answer_sign(peer, protocol._json(param, "session"))
        if env.method == "ecdh":
            return self._answer_ecdh(peer, protocol._json(param, "ecdh")), []
        raise WireError(f"method {env.method!r} is not supported")

    def _refill(self, peer: str) -> list[NonceCommit]:
        """Fresh nonces for ``peer`` when it holds fewer than MIN_THRESHOLD of ours (and no
        batch is on its way): bifrost's rule, so views of a pool stay equal."""
        if self.pools.needs_replenish(peer) and not self.pools.pending_count(peer):
            return self.pools.replenish(peer)
        return []

    def _check_members(self, peer: PeerState, members: list[int]) -> None:
        if self.idx not in members or peer.idx not in members:
            raise WireError("the requester and this holder must both be members")
        if len(members) < self.group.threshold:
            raise WireError(f"need at least {self.group.threshold} members")
        unknown = [m for m in members if m not in self.group.members]
        if unknown:
            raise WireError(f"unknown members {unknown}")

    def _answer_sign(self, peer: PeerState, obj: Any
                     ) -> tuple[dict[str, Any], list[NonceCommit]]:
        session = SignSession.from_json(obj)
        session.check_ids(self.group)
        self._check_members(peer, session.members)
        if len(session.hashes) != protocol.MAX_HASHES or len(session.hashes[0]) != 1:
            raise WireError("one sighash without tweaks per session (a nonce signs one message)")
        sighash = bytes.fromhex(session.hashes[0][0])
        try:
            event = event_from_content(session.content, sighash, self.group.public_key)
        except ValueError as exc:
            raise WireError(str(exc)) from None
        reason = self.policy.check_sign(SignRequest(peer.pubkey, peer.idx, sighash, event))
        if reason:
            raise WireError(reason)
        mine = session.nonce_for(self.idx)
        nonce = self.pools.consume_outgoing(peer.pubkey, mine.code)  # destroyed from here on
        if nonce is None:
            raise WireError(f"{STALE_NONCE_REASON} (replayed request?)")
        if (frost.ser(frost.base_mul(nonce.binding)) != frost.ser(mine.binder_pn)
                or frost.ser(frost.base_mul(nonce.hiding)) != frost.ser(mine.hidden_pn)):
            raise WireError("session nonce does not match the code")
        fs = SigningSession(self.suite, self.group.group_pk, session.commitments(), sighash)
        z = self.sign_share(fs, nonce)
        replenish = self._refill(peer.pubkey)
        return SignResponse(self.idx, [(sighash, z)], self.share.public, session.sid,
                            mine.code, replenish).to_json(), replenish

    def sign_share(self, fs: SigningSession, nonce: frost.Nonce) -> int:
        """This holder's partial signature (a seam tests use to play a cheating holder)."""
        return fs.sign(self.idx, self.share.seckey, nonce)

    def _answer_ecdh(self, peer: PeerState, obj: Any) -> dict[str, Any]:
        req = EcdhPackage.from_json(obj)
        if req.idx != peer.idx:
            raise WireError("ecdh idx is not the requester's")
        self._check_members(peer, req.members)
        reason = self.policy.check_ecdh(peer.pubkey)
        if reason:
            raise WireError(reason)
        entries = []
        for pk, _their_share in req.entries:  # the requester's keyshare is never needed here
            point = frost.lift_x(pk)
            entries.append((pk, frost.ecdh_keyshare(self.idx, self.share.seckey, req.members,
                                                    point)))
        return EcdhPackage(self.idx, req.members, entries).to_json()
