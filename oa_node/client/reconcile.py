"""NIP-77 (negentropy) on a relay connection: reconcile a local set of (created_at, id)
with the relay's events under a filter, as the initiator.

It sits on the connection's other layers, so a relay that answers ``NEG-OPEN`` with
``NEG-ERR``/``CLOSED`` ``auth-required:`` gets the same NIP-42 answer (the connection's
signer, :mod:`.auth`) and one re-open, as REQ and EVENT do. Every relay frame is hostile:
a bad negentropy message, too many differences or rounds, or silence end the call with
one :class:`ClientError`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.client.errors import ClientError
from oa_node.client.subscription import new_sub_id
from oa_node.client.waiters import WaiterLayer
from oa_node.nostr.errors import split_prefix
from oa_node.nostr.messages import (
    ClientNegClose,
    ClientNegMsg,
    ClientNegOpen,
    RelayClosed,
    RelayNegErr,
    RelayNegMsg,
    encode,
)
from oa_node.nostr.negentropy import Negentropy, NegentropyError, Storage

if TYPE_CHECKING:
    from oa_node.nostr.filter import Filter
    from oa_node.signer import Signer

#: Our negentropy messages stay under this (bytes; hex doubles it) so any relay takes them.
FRAME_LIMIT = 60_000
MAX_ROUNDS = 1000
#: More differences than this and a sync is refused (a hostile relay cannot fill memory).
MAX_DIFFERENCES = 2_000_000

_NegAnswer = RelayNegMsg | RelayNegErr | RelayClosed | ClientError
#: Answers queued per session: a relay answers each of our messages once; more is dropped.
_MAX_QUEUED = 8


@dataclass
class Reconciled:
    """The ids only we have (``have``), those only the relay has (``need``), 32 bytes each."""

    have: list[bytes] = field(default_factory=list)
    need: list[bytes] = field(default_factory=list)
    rounds: int = 0


class ReconcileLayer(WaiterLayer):
    """NEG-OPEN / NEG-MSG / NEG-CLOSE sessions on one connection."""

    def __init__(self, url: str, signer: Signer | None = None, **rest: Any) -> None:
        super().__init__(url, signer, **rest)
        self._negs: dict[str, asyncio.Queue[_NegAnswer]] = {}

    async def reconcile(
        self,
        filt: Filter,
        storage: Storage,
        *,
        timeout: float = 30.0,
        frame_limit: int = FRAME_LIMIT,
        max_rounds: int = MAX_ROUNDS,
        max_differences: int = MAX_DIFFERENCES,
    ) -> Reconciled:
        """Run one reconciliation of ``storage`` against the relay's events under
        ``filt``; ``timeout`` bounds each wait for the relay. ClientError on refusal."""
        self.start()
        error = await self._wait_ready(timeout)
        if error is not None:
            raise ClientError(error.removeprefix("error: "))
        sub_id = new_sub_id()
        answers: asyncio.Queue[_NegAnswer] = asyncio.Queue(_MAX_QUEUED)
        self._negs[sub_id] = answers
        try:
            auth_tried = False
            while True:
                done = await self._one_session(sub_id, answers, filt, storage, timeout,
                                               frame_limit, max_rounds, max_differences)
                if isinstance(done, Reconciled):
                    return done
                # refused with auth-required: authenticate once, then open again
                if auth_tried or not self._can_auth():
                    hint = "" if self._can_auth() else " (no key to authenticate with)"
                    raise ClientError(f"{self.url} refused the sync: {done[:200]}{hint}")
                auth_tried = True
                ok, message = await self.authenticate(timeout)
                if not ok:
                    raise ClientError(f"{self.url} refused the sync ({done[:200]}); "
                                      f"authentication failed: {message}")
        finally:
            self._negs.pop(sub_id, None)

    async def _one_session(
        self, sub_id: str, answers: asyncio.Queue[_NegAnswer], filt: Filter, storage: Storage,
        timeout: float, frame_limit: int, max_rounds: int, max_differences: int,
    ) -> Reconciled | str:
        """A whole exchange; an ``auth-required:`` refusal is returned as its reason."""
        neg = Negentropy(storage, frame_limit)
        out = Reconciled()
        self._send_or_fail(encode(ClientNegOpen(sub_id, filt, neg.initiate().hex())))
        for _ in range(max_rounds):
            msg = await self._next_answer(answers, timeout, out.rounds)
            if isinstance(msg, ClientError):
                raise msg
            if not isinstance(msg, RelayNegMsg):
                reason = msg.reason if isinstance(msg, RelayNegErr) else msg.message
                if split_prefix(reason)[0] == "auth-required":
                    return reason
                raise ClientError(f"{self.url} refused the sync: {reason[:200]}")
            out.rounds += 1
            try:
                nxt, have, need = neg.reconcile(bytes.fromhex(msg.message))
            except (ValueError, NegentropyError) as exc:
                raise ClientError(f"{self.url} sent a bad negentropy message: {exc}") from None
            out.have += have
            out.need += need
            if len(out.have) + len(out.need) > max_differences:
                raise ClientError(f"more than {max_differences} differences: narrow the filter")
            if nxt is None:
                self._send_soon(encode(ClientNegClose(sub_id)))
                return out
            self._send_or_fail(encode(ClientNegMsg(sub_id, nxt.hex())))
        raise ClientError(f"{self.url}: no convergence after {max_rounds} rounds")

    async def _next_answer(self, answers: asyncio.Queue[_NegAnswer], timeout: float,
                           rounds: int) -> _NegAnswer:
        with anyio.move_on_after(timeout):
            return await answers.get()
        hint = "" if rounds else " to NEG-OPEN (does it support NIP-77?)"
        raise ClientError(f"{self.url}: no answer within {timeout:g}s{hint}")

    def _send_or_fail(self, text: str) -> None:
        if not self._send_soon(text):
            raise ClientError(self.last_error.removeprefix("error: ") if self.last_error
                              else f"{self.url}: not connected")

    # --- hooks --------------------------------------------------------------------------

    def _fail_negs(self, message: str) -> None:
        for answers in self._negs.values():
            _offer(answers, ClientError(f"{self.url}: {message.removeprefix('error: ')}"))

    def _on_disconnected(self) -> None:
        super()._on_disconnected()
        self._fail_negs("error: connection lost")

    def _end_all(self, message: str) -> None:
        super()._end_all(message)
        self._fail_negs(message)

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, RelayNegMsg | RelayNegErr):
            answers = self._negs.get(msg.sub_id)
            if answers is not None:
                _offer(answers, msg)
        elif isinstance(msg, RelayClosed) and msg.sub_id in self._negs:
            _offer(self._negs[msg.sub_id], msg)
        else:
            super()._dispatch(msg)


def _offer(answers: asyncio.Queue[_NegAnswer], item: _NegAnswer) -> None:
    """Queue an answer; past _MAX_QUEUED the relay is answering what we never asked."""
    if isinstance(item, ClientError):
        while not answers.empty():  # the end of the connection wins over queued answers
            answers.get_nowait()
    if not answers.full():
        answers.put_nowait(item)
