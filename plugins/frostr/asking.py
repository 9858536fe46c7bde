"""Asking peers: pings, signatures and threshold ECDH, as :class:`FrostHolder` does them.

A mixin of :class:`~oa_node.plugins.frostr.holder.FrostHolder` (split from it for size); the
holder owns the transport, the pools and the answering side.

Messages per signature are bounded whatever the peers do: each peer is pinged at most twice
per call and asked to sign at most once per attempt, a peer that fails is left out of later
attempts, and the maintenance loop pings a peer at most once per backoff interval.
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
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from oa_node.client import ClientError
from oa_node.errors import UserError
from oa_node.nostr import nip44
from oa_node.plugins.frostr import frost, protocol
from oa_node.plugins.frostr.frost import FrostError, SigningSession
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

if TYPE_CHECKING:
    from oa_node.plugins.frostr.encoding import GroupPackage, SharePackage
    from oa_node.plugins.frostr.suite import Ciphersuite

T = TypeVar("T")
log = logging.getLogger("oa_node.frostr")

#: Threshold-ECDH results kept (least recently used dropped): one per peer the node talks to,
#: so a long-running node meeting many strangers keeps bounded memory.
ECDH_CACHE_MAX = 4096
#: how often the pools are looked at, and the longest wait between pings of a peer that
#: does not answer (or answers without nonces)
MAINTAIN_INTERVAL = 1.0
MAINTAIN_MAX_BACKOFF = 60.0
PING_RETRY_DELAY = 0.5
NO_NONCES_REASON = ("answered without nonces for this holder: it believes this holder still "
                    "holds some (nonce pools lost?); it sends more once it counts fewer than "
                    f"{protocol.MIN_THRESHOLD}")
#: the reject reason for a nonce code a holder does not have (or used already)
STALE_NONCE_REASON = "unknown or already used nonce code"


class FrostUnavailable(UserError):
    """Not enough peers answered in time; the message says who did and who did not."""


class NotSent(ClientError):
    """No relay accepted a message: the peer certainly never saw it."""


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


class Asking:
    """The requester side of a share holder (see the module docstring)."""

    group: GroupPackage
    share: SharePackage
    idx: int
    suite: Ciphersuite
    peers: dict[str, PeerState]
    pools: NoncePools
    cheaters: set[int]
    request_timeout: float
    sign_timeout: float
    _ecdh_cache: OrderedDict[str, bytes]
    _starved: dict[str, float | None]
    _pinging: dict[str, tuple[anyio.Event, list[Any]]]
    _ping_started: dict[str, float]
    _backoff: dict[str, float]
    _due: dict[str, float]
    _wake: anyio.Event
    _nonces_arrived: anyio.Event

    def _refill(self, peer: str) -> list[NonceCommit]:
        raise NotImplementedError

    def _received_nonces(self, peer: str, nonces: list[NonceCommit]) -> None:
        raise NotImplementedError

    async def _request(self, peer: str, env: Envelope, timeout: float) -> Any:
        raise NotImplementedError

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

    async def _maintain(self) -> None:
        """Ping peers whose pools are low until they answer, with a per-peer backoff of
        1 s doubling to ``MAINTAIN_MAX_BACKOFF``: at most one message per peer per interval,
        whatever the peers do."""
        backoff, due = self._backoff, self._due
        while True:
            now = time.monotonic()
            targets = [p for p in self.peers if due.get(p, 0.0) <= now and self._low(p)]
            if targets:
                results = await self.ping_all(self.request_timeout, targets)
                now = time.monotonic()
                for p, r in results.items():
                    if isinstance(r, float) and not self._low(p):
                        backoff.pop(p, None)
                        due.pop(p, None)
                        continue
                    b = backoff[p] = min(MAINTAIN_MAX_BACKOFF, backoff.get(p, 0.5) * 2)
                    due[p] = now + b
            with anyio.move_on_after(MAINTAIN_INTERVAL):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _low(self, peer: str) -> bool:
        """No nonces of the peer's, or the peer holds too few of ours."""
        return (self.pools.incoming_count(peer) == 0 or self.pools.needs_replenish(peer))

    async def ping(self, peer: str, timeout: float | None = None) -> float:
        """Ping a peer, trading nonces; the round-trip time in seconds. A ping already on
        its way to the peer is waited for rather than doubled (one batch of nonces at a
        time, and a second answer without nonces cannot overtake the first)."""
        inflight = self._pinging.get(peer)
        if inflight is not None:
            done, outcome = inflight
            await done.wait()
            if isinstance(outcome[0], BaseException):
                raise outcome[0]
            return outcome[0]
        done, outcome = anyio.Event(), [None]
        self._pinging[peer] = (done, outcome)
        self._ping_started[peer] = time.monotonic()
        try:
            rtt = await self._ping(peer, timeout)
            outcome[0] = rtt
            return rtt
        except Exception as exc:
            outcome[0] = exc
            raise
        except BaseException:  # cancelled: whoever waits tries again itself
            outcome[0] = TimeoutError("ping cancelled")
            raise
        finally:
            del self._pinging[peer]
            self._ping_started.pop(peer, None)
            done.set()

    async def _ping(self, peer: str, timeout: float | None) -> float:
        st = self.peers[peer]
        # Nonces go along only when the peer holds fewer than MIN_THRESHOLD of ours (as
        # bifrost does); the peer's answer carries its own when we hold too few of its.
        fresh = self._refill(peer)
        start = time.monotonic()
        try:
            data = await self._request(
                peer, protocol.request("ping", Ping(fresh).request_json()),
                timeout or self.request_timeout)
        except BaseException:
            # the peer may never have seen these; if it did, they are refused when used
            self.pools.discard(peer, (n.code for n in fresh))
            raise
        rtt = time.monotonic() - start
        self.pools.confirm(peer, (n.code for n in fresh))  # it answered: it has them
        reply = Ping.parse_reply(data)
        self._received_nonces(peer, reply.nonces)
        if not reply.nonces and self.pools.incoming_count(peer) == 0:
            # At start-up a batch may cross ours for a moment; a peer that still sends none
            # after two request timeouts is worth one warning.
            first = self._starved.setdefault(peer, time.monotonic())
            if first is not None and time.monotonic() - first > 2 * self.request_timeout:
                log.warning("frostr: member %d answers but sends no nonces: it believes this "
                            "holder still holds some (were this holder's nonce pools lost?); "
                            "it sends more once it counts fewer than %d", st.idx,
                            protocol.MIN_THRESHOLD)
                self._starved[peer] = None  # warned
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

    async def ping_window(self, window: float) -> dict[str, float | str]:
        """Ping every peer until it answers or ``window`` seconds pass, repeating failed
        pings with backoff (0.25 s doubling to 5 s): a relay that is still connecting or
        reconnecting does not make peers look offline. The last error per peer otherwise."""
        deadline = time.monotonic() + window
        results: dict[str, float | str] = {}
        delay = 0.25
        while True:
            todo = [p for p in self.peers if not isinstance(results.get(p), float)]
            remaining = deadline - time.monotonic()
            if not todo or remaining <= 0:
                return results
            results.update(await self.ping_all(min(remaining, self.request_timeout), todo))
            if all(isinstance(results[p], float) for p in todo):
                return results
            await anyio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)

    def _usable(self, peer: str, excluded: set[str]) -> bool:
        return (peer not in excluded and self.peers[peer].idx not in self.cheaters
                and self.pools.incoming_count(peer) > 0)

    async def sign(self, sighash: bytes, content: bytes | None = None,
                   timeout: float | None = None) -> SignResult:
        """A BIP-340 signature by the group key on ``sighash`` (an event id).

        ``content`` (the event's NIP-01 serialisation) lets peers check what they sign.
        Peers that time out, refuse or cheat are left out and the session retried with
        others until ``timeout``; :class:`FrostUnavailable` says who failed and why.

        Messages per call are bounded whatever the peers do: each peer is pinged at most
        twice (the second time only after it refused a nonce of its own as unknown, i.e.
        it lost its pools) and asked to sign at most once per attempt, and a peer that
        fails is left out of later attempts.
        """
        if len(sighash) != 32:
            raise ValueError("sighash must be 32 bytes")
        need = self.group.threshold - 1
        deadline = time.monotonic() + (timeout or self.sign_timeout)
        excluded: set[str] = set()
        failures: dict[str, str] = {}
        cheaters: list[int] = []
        pings: dict[str, int] = {}
        stale_retried: set[str] = set()
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            candidates = [p for p in self.peers if self._usable(p, excluded)]
            if len(candidates) < need:
                missing = [p for p in self.peers if p not in excluded
                           and self.peers[p].idx not in self.cheaters and p not in candidates
                           and pings.get(p, 0) < 2]
                if not missing:
                    break
                for p in missing:
                    pings[p] = pings.get(p, 0) + 1
                results = await self.ping_all(min(remaining, self.request_timeout), missing,
                                              enough=need - len(candidates))
                retry = wait_nonces = False
                for p, r in results.items():
                    if r == "cancelled":
                        continue
                    if not isinstance(r, float):
                        failures[p] = f"ping: {r}"
                    elif self.pools.incoming_count(p) == 0:
                        failures[p] = NO_NONCES_REASON
                        wait_nonces = True
                    else:
                        failures.pop(p, None)
                        continue
                    # A second ping, a moment later, before leaving the peer out: the first
                    # may have been sent before the peer was up, or crossed a batch of ours.
                    if pings[p] >= 2:
                        excluded.add(p)
                    else:
                        retry = True
                if wait_nonces:
                    # A peer whose ping to us is on its way answers without nonces (its
                    # batch travels with that ping): wait for it, without more messages.
                    with anyio.move_on_after(min(self.request_timeout,
                                                 max(0.0, deadline - time.monotonic()))):
                        await self._nonces_arrived.wait()
                elif retry:
                    await anyio.sleep(min(PING_RETRY_DELAY, max(0.0, deadline - time.monotonic())))
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
                if STALE_NONCE_REASON in failures.get(p, "") and p not in stale_retried:
                    # It does not know its own nonce: that batch never reached it or it lost
                    # it (a restart). Drop that batch and older ones; try the peer once more
                    # (with a newer batch, or after a ping that brings a fresh one).
                    stale_retried.add(p)
                    self.pools.drop_batches_through(p, self.pools.last_taken_batch.get(p, 0))
                    if self.pools.incoming_count(p) or pings.get(p, 0) < 2:
                        del failures[p]
                        continue
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
            self._received_nonces(peer, resp.replenish)
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
