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

import hashlib
import hmac
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from oa_node.client import ClientError, RelayPool
from oa_node.errors import UserError
from oa_node.nostr import nip44
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.plugins.frostr import frost, protocol
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

T = TypeVar("T")
log = logging.getLogger("oa_node.frostr")

MAX_EVENT_AGE = 120  # seconds: older requests are replays from a relay that stores kind 20000
_SEEN_MAX = 10_000
#: Threshold-ECDH results kept (least recently used dropped): one per peer the node talks to,
#: so a long-running node meeting many strangers keeps bounded memory.
ECDH_CACHE_MAX = 4096


class FrostUnavailable(UserError):
    """Not enough peers answered in time; the message says who did and who did not."""


class PeerRejected(Exception):
    def __init__(self, peer: str, reason: str) -> None:
        self.peer, self.reason = peer, reason
        super().__init__(f"{peer[:12]}… refused: {reason}")


@dataclass
class SignResult:
    signature: bytes
    signers: list[int]
    #: member indexes whose partial signatures failed verification during this call
    cheaters: list[int] = field(default_factory=list)
    attempts: int = 1


@dataclass
class PeerState:
    idx: int
    pubkey: str
    last_seen: float = 0.0
    policy: dict[str, bool] | None = None


class FrostHolder:
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
        self.pools = NoncePools(share.secret_bytes)
        self.cheaters: set[int] = set()
        #: whether the plugins' ``register_frost_policies`` checks are in ``policy.checks``
        self.plugin_checks_loaded = False
        self.stats: dict[str, int] = {"answered": 0, "rejected": 0, "dropped": 0}
        self._signer = LocalSigner(share.secret_bytes)
        self._conv: dict[str, bytes] = {}
        self._pending: dict[str, tuple[str, Any]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ecdh_cache: OrderedDict[str, bytes] = OrderedDict()
        self._pool: RelayPool | None = None
        self._tg: TaskGroup | None = None
        self._ready = anyio.Event()
        self._stopped = False

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
        """Connect, subscribe and answer peers until cancelled."""
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
                if self.ping_on_start:  # trade nonces early so the first signature is fast
                    tg.start_soon(self.ping_all)
                self._ready.set()
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._stopped = True
            self._fail_pending("holder stopped")
            with anyio.CancelScope(shield=True):
                await pool.close()

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
        result = await self._pool.publish(event, timeout=self.request_timeout)
        if not result.ok:
            raise ClientError(f"no relay accepted the message: {result.rejected}")

    async def request(self, peer: str, method: str, param: str,
                      timeout: float | None = None) -> Any:
        """One raw RPC to a peer: the accept ``data``; PeerRejected or TimeoutError."""
        if peer not in self.peers:
            raise UserError(f"{peer} is not a peer of this holder")
        return await self._request(peer, protocol.request(method, param),
                                   timeout or self.request_timeout)

    async def _ask(self, peer: str, method: str, params: Any, timeout: float,
                   parse: Callable[[Any], T], failures: dict[str, str]) -> T | None:
        """One request to one peer, parsed; on a timeout, refusal or bad reply the reason
        is written to ``failures[peer]`` and ``None`` returned (signing goes on with the
        others)."""
        try:
            return parse(await self._request(peer, protocol.request(method, params), timeout))
        except TimeoutError:
            failures[peer] = "no answer (timeout)"
        except PeerRejected as exc:
            failures[peer] = f"refused: {exc.reason}"
        except (WireError, ClientError) as exc:
            failures[peer] = f"bad reply: {exc}"
        return None

    async def _request(self, peer: str, env: Envelope, timeout: float) -> Any:
        """Send a request and wait for the peer's accept ``data``; PeerRejected or
        TimeoutError otherwise."""
        send, receive = anyio.create_memory_object_stream[Envelope](1)
        self._pending[env.id] = (peer, send)
        try:
            with anyio.fail_after(timeout):
                await self._send(peer, env)
                reply = await receive.receive()
        finally:
            self._pending.pop(env.id, None)
            send.close()
            receive.close()
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
        if env.type in ("accept", "reject"):
            pending = self._pending.get(env.id)
            if pending is not None and pending[0] == event.pubkey:
                try:
                    pending[1].send_nowait(env)
                except (anyio.WouldBlock, anyio.ClosedResourceError,
                        anyio.BrokenResourceError):
                    pass
            return
        try:
            data = self._answer(peer, env)
        except (WireError, FrostError, ValueError) as exc:
            self.stats["rejected"] += 1
            log.info("frostr: refused %s from member %d: %s", env.method, peer.idx, exc)
            await self._send(event.pubkey, protocol.reject(env.id, str(exc)))
            return
        self.stats["answered"] += 1
        await self._send(event.pubkey, protocol.accept(env.id, data))

    # --- answering peers ----------------------------------------------------------------------

    def _answer(self, peer: PeerState, env: Envelope) -> Any:
        param = env.params[0] if env.params else ""
        if env.method == "ping":
            ping = Ping.parse_request(param)
            self.pools.add_incoming(peer.pubkey, ping.nonces)
            # A peer sending nonces has run low on ours, or restarted and lost them (pools
            # live in memory): either way it needs a fresh batch of ours as well.
            fresh = (self.pools.replenish(peer.pubkey)
                     if ping.nonces or self.pools.needs_replenish(peer.pubkey) else [])
            return Ping(fresh, policy={"send": True, "recv": True}).reply_json()
        if env.method == "sign":
            return self._answer_sign(peer, protocol._json(param, "session"))
        if env.method == "ecdh":
            return self._answer_ecdh(peer, protocol._json(param, "ecdh"))
        raise WireError(f"method {env.method!r} is not supported")

    def _check_members(self, peer: PeerState, members: list[int]) -> None:
        if self.idx not in members or peer.idx not in members:
            raise WireError("the requester and this holder must both be members")
        if len(members) < self.group.threshold:
            raise WireError(f"need at least {self.group.threshold} members")
        unknown = [m for m in members if m not in self.group.members]
        if unknown:
            raise WireError(f"unknown members {unknown}")

    def _answer_sign(self, peer: PeerState, obj: Any) -> dict[str, Any]:
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
            raise WireError("unknown or already used nonce code (replayed request?)")
        if (frost.ser(frost.base_mul(nonce.binding)) != frost.ser(mine.binder_pn)
                or frost.ser(frost.base_mul(nonce.hiding)) != frost.ser(mine.hidden_pn)):
            raise WireError("session nonce does not match the code")
        fs = SigningSession(self.suite, self.group.group_pk, session.commitments(), sighash)
        z = self.sign_share(fs, nonce)
        replenish = (self.pools.replenish(peer.pubkey)
                     if self.pools.needs_replenish(peer.pubkey) else [])
        return SignResponse(self.idx, [(sighash, z)], self.share.public, session.sid,
                            mine.code, replenish).to_json()

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

    # --- asking peers ----------------------------------------------------------------------------

    async def ping(self, peer: str, timeout: float | None = None) -> float:
        """Ping a peer, trading nonces; the round-trip time in seconds."""
        st = self.peers[peer]
        # Send nonces when the peer runs low on ours, and also when we run low on its: an
        # oa-node peer answers a ping that carries nonces with a fresh batch of its own.
        low = (self.pools.needs_replenish(peer)
               or self.pools.incoming_count(peer) < protocol.MIN_THRESHOLD)
        fresh = self.pools.replenish(peer) if low else []
        start = time.monotonic()
        try:
            data = await self._request(
                peer, protocol.request("ping", Ping(fresh).request_json()),
                timeout or self.request_timeout)
        except BaseException:
            # the peer may never have seen these: keeping them would make it look stocked
            self.pools.discard(peer, (n.code for n in fresh))
            raise
        rtt = time.monotonic() - start
        reply = Ping.parse_reply(data)
        self.pools.add_incoming(peer, reply.nonces)
        st.last_seen, st.policy = time.monotonic(), reply.policy
        return rtt

    async def ping_all(self, timeout: float | None = None,
                       peers: Iterable[str] | None = None,
                       enough: int | None = None) -> dict[str, float | str]:
        """Ping peers concurrently: ``{pubkey: rtt seconds or an error message}``. With
        ``enough``, stop waiting once that many have answered (the rest are "cancelled")."""
        out: dict[str, float | str] = {}
        targets = list(self.peers if peers is None else peers)

        async def one(peer: str, tg: TaskGroup) -> None:
            try:
                out[peer] = await self.ping(peer, timeout)
            except TimeoutError:
                out[peer] = "timeout"
            except (PeerRejected, WireError, ClientError) as exc:
                out[peer] = str(exc)
            if enough is not None and sum(isinstance(v, float) for v in out.values()) >= enough:
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for peer in targets:
                tg.start_soon(one, peer, tg)
        for peer in targets:
            out.setdefault(peer, "cancelled")
        return out

    def _usable(self, peer: str, excluded: set[str]) -> bool:
        return (peer not in excluded and self.peers[peer].idx not in self.cheaters
                and self.pools.incoming_count(peer) > 0)

    async def sign(self, sighash: bytes, content: bytes | None = None,
                   timeout: float | None = None) -> SignResult:
        """A BIP-340 signature by the group key on ``sighash`` (an event id).

        ``content`` (the event's NIP-01 serialisation) lets peers apply kind policies. Peers
        that time out, refuse or cheat are left out and the session retried with others
        until ``timeout``; :class:`FrostUnavailable` says who failed.
        """
        if len(sighash) != 32:
            raise ValueError("sighash must be 32 bytes")
        need = self.group.threshold - 1
        deadline = time.monotonic() + (timeout or self.sign_timeout)
        excluded: set[str] = set()
        failures: dict[str, str] = {}
        cheaters: list[int] = []
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            candidates = [p for p in self.peers if self._usable(p, excluded)]
            if len(candidates) < need:
                missing = [p for p in self.peers if p not in excluded
                           and self.peers[p].idx not in self.cheaters and p not in candidates]
                if not missing:
                    break
                results = await self.ping_all(min(remaining, self.request_timeout), missing,
                                              enough=need - len(candidates))
                for p, r in results.items():
                    if not isinstance(r, float) and r != "cancelled":
                        failures[p] = f"ping: {r}"
                        excluded.add(p)
                continue
            # prefer peers seen recently; random among equals, as bifrost does
            random.shuffle(candidates)
            candidates.sort(key=lambda p: -self.peers[p].last_seen)
            chosen = candidates[:need]
            attempts += 1
            try:
                sig, bad = await self._sign_once(sighash, content, chosen,
                                                 min(remaining, self.request_timeout), failures)
            except FrostError as exc:  # should not happen with verified shares
                failures["aggregate"] = str(exc)
                continue
            for p in chosen:
                if p in failures:
                    excluded.add(p)
            cheaters.extend(bad)
            if sig is not None:
                return SignResult(sig, sorted([self.idx, *(self.peers[p].idx for p in chosen)]),
                                  cheaters, attempts)
        detail = "; ".join(f"member {self.peers[p].idx if p in self.peers else p}: {why}"
                           for p, why in failures.items()) or "no peer with nonces"
        raise FrostUnavailable(
            f"frostr: could not gather {self.group.threshold} of {len(self.group.members)} "
            f"signers in time ({detail})")

    async def _sign_once(self, sighash: bytes, content: bytes | None, chosen: list[str],
                         timeout: float, failures: dict[str, str]
                         ) -> tuple[bytes | None, list[int]]:
        nonces: dict[int, NonceCommit] = {}
        for p in chosen:
            commit = self.pools.take_incoming(p)
            assert commit is not None  # _usable checked the pool
            nonces[self.peers[p].idx] = commit
        own = NonceCommit.create(self.share.secret_bytes)
        nonces[self.idx] = own
        session = SignSession.build(self.group, list(nonces), sighash, int(time.time()),
                                    nonces, content)
        fs = SigningSession(self.suite, self.group.group_pk, session.commitments(), sighash)
        params = protocol.dumps(session.to_json())
        shares: dict[int, int] = {}
        bad: list[int] = []

        async def ask(peer: str) -> None:
            st = self.peers[peer]
            resp = await self._ask(peer, "sign", params, timeout, SignResponse.from_json,
                                   failures)
            if resp is None:
                return
            self.pools.add_incoming(peer, resp.replenish)
            if (resp.idx != st.idx or resp.sid != session.sid or resp.nonce_code
                    != nonces[st.idx].code or len(resp.psigs) != 1 or resp.psigs[0][0] != sighash
                    or frost.ser(resp.pubkey) != frost.ser(self.group.members[st.idx])):
                failures[peer] = "reply does not match the session"
                return
            z = resp.psigs[0][1]
            if not fs.verify_share(st.idx, self.group.members[st.idx], z):
                log.warning("frostr: member %d sent an invalid partial signature", st.idx)
                failures[peer] = "invalid partial signature"
                self.cheaters.add(st.idx)
                bad.append(st.idx)
                return
            shares[st.idx] = z

        async with anyio.create_task_group() as tg:
            for p in chosen:
                tg.start_soon(ask, p)
        own_nonce = protocol.derive_nonce(self.share.secret_bytes, own.code)
        del own  # our nonce for this session is never used again, whatever happened
        if len(shares) != len(chosen):
            return None, bad
        shares[self.idx] = fs.sign(self.idx, self.share.seckey, own_nonce)
        sig = fs.aggregate(shares, self.group.members)  # verifies the BIP-340 signature
        return sig, bad

    async def ecdh(self, peer_pubkey: str, timeout: float | None = None) -> bytes:
        """The NIP-44 shared x coordinate with ``peer_pubkey`` (x-only hex), computed by
        threshold ECDH: the group secret is never assembled."""
        cached = self._ecdh_cache.get(peer_pubkey)
        if cached is not None:
            self._ecdh_cache.move_to_end(peer_pubkey)
            return cached
        try:
            pk = bytes.fromhex(peer_pubkey)
            point = frost.lift_x(pk)
        except (ValueError, FrostError):
            raise UserError(f"not an x-only public key: {peer_pubkey!r}") from None
        need = self.group.threshold - 1
        deadline = time.monotonic() + (timeout or self.sign_timeout)
        excluded: set[str] = set()
        failures: dict[str, str] = {}
        while (remaining := deadline - time.monotonic()) > 0:
            live = [p for p in self.peers if p not in excluded
                    and self.peers[p].idx not in self.cheaters]
            if len(live) < need:
                break
            random.shuffle(live)
            live.sort(key=lambda p: -self.peers[p].last_seen)
            chosen = live[:need]
            members = sorted([self.idx, *(self.peers[p].idx for p in chosen)])
            # the public point in place of our keyshare: the responder needs only ecdh_pk
            req = EcdhPackage(self.idx, members, [(pk, point)]).to_json()
            parts: dict[int, frost.Point] = {}

            async def ask(peer: str, req: dict[str, Any] = req,
                          members: list[int] = members, parts: dict[int, Any] = parts,
                          remaining: float = remaining) -> None:
                resp = await self._ask(peer, "ecdh", req, min(remaining, self.request_timeout),
                                       EcdhPackage.from_json, failures)
                if resp is None:
                    return
                if (resp.idx != self.peers[peer].idx or resp.members != members
                        or len(resp.entries) != 1 or resp.entries[0][0] != pk):
                    failures[peer] = "reply does not match the request"
                    return
                parts[resp.idx] = resp.entries[0][1]

            async with anyio.create_task_group() as tg:
                for p in chosen:
                    tg.start_soon(ask, p)
            for p in chosen:
                if p in failures:
                    excluded.add(p)
            if len(parts) == need:
                parts[self.idx] = frost.ecdh_keyshare(self.idx, self.share.seckey, members,
                                                      point)
                shared = frost.xonly(frost.ecdh_combine(parts.values()))
                self._ecdh_cache[peer_pubkey] = shared
                if len(self._ecdh_cache) > ECDH_CACHE_MAX:
                    self._ecdh_cache.popitem(last=False)
                return shared
        detail = "; ".join(f"member {self.peers[p].idx}: {why}" for p, why in failures.items())
        raise FrostUnavailable(f"frostr: threshold ECDH failed ({detail or 'no peers'})")

    def conversation_key(self, shared_x: bytes) -> bytes:
        """NIP-44 conversation key from a threshold-ECDH shared x coordinate."""
        return nip44_conversation_key_from_x(shared_x)


def nip44_conversation_key_from_x(shared_x: bytes) -> bytes:
    """HKDF-extract(salt ``nip44-v2``, shared x): what NIP-44 derives from an ECDH."""
    return hmac.new(nip44.SALT, shared_x, hashlib.sha256).digest()
