"""NIP-42 on a relay connection: remember the relay's challenge and answer it with the
node's signer, automatically (``auto_auth``) or when a refusal says ``auth-required``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.client.link import RelayLink
from oa_node.client.status import State
from oa_node.nostr.messages import ClientAuth, RelayAuth, RelayOk, encode
from oa_node.nostr.nip42 import auth_template

if TYPE_CHECKING:
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.client")


class AuthLayer(RelayLink):
    """The NIP-42 state of one connection: challenge, AUTH in flight, authenticated."""

    def __init__(self, url: str, signer: Signer | None = None, *, auto_auth: bool = True,
                 auth_timeout: float = 10.0, **link: Any) -> None:
        super().__init__(url, signer, **link)
        self.auto_auth = auto_auth
        self.auth_timeout = auth_timeout
        self.challenge: str | None = None
        self.authenticated = False
        self._auth_event_id: str | None = None
        self._auth_future: asyncio.Future[tuple[bool, str]] | None = None

    def _can_auth(self) -> bool:
        return self.signer is not None

    async def authenticate(self, timeout: float | None = None) -> tuple[bool, str]:
        """Answer the relay's AUTH challenge with the signer; ``(ok, message)``.
        Waits (bounded) for a challenge if none has arrived yet."""
        if self.signer is None:
            return False, "error: no signer to authenticate with"
        if self.authenticated:
            return True, ""
        timeout = self.auth_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.start()
        with anyio.move_on_after(timeout):
            while self.challenge is None or self._state is not State.CONNECTED:
                if self._state in (State.BACKOFF, State.CLOSED):
                    return False, self.last_error or "error: not connected"
                await self._wait_state_change()
            future = self._auth_future
            if future is None or (future.done() and not future.result()[0]):
                future = self._start_auth()
            ok, message = await asyncio.shield(future)
            return ok, message
        left = deadline - time.monotonic()
        what = "no AUTH challenge" if self.challenge is None else "no OK for AUTH"
        return False, f"timeout: {what} from {self.url} within {timeout - max(left, 0):g}s"

    def _start_auth(self) -> asyncio.Future[tuple[bool, str]]:
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._auth_future = future
        self._spawn(self._send_auth(future, self.challenge or ""))
        return future

    async def _send_auth(self, future: asyncio.Future[tuple[bool, str]], challenge: str) -> None:
        assert self.signer is not None
        try:
            event = await self.signer.sign(auth_template(challenge, self.url))
        except Exception as exc:  # a signer failure must not kill the connection
            log.warning("%s: signing the AUTH event failed: %s", self.url, exc)
            if not future.done():
                future.set_result((False, f"error: signing the AUTH event failed: {exc}"))
            return
        if future is not self._auth_future or future.done():
            return  # superseded by a reconnect
        self._auth_event_id = event.id
        if not self._send_soon(encode(ClientAuth(event))) and not future.done():
            future.set_result((False, "error: not connected"))

    def _on_auth_ok(self, msg: RelayOk) -> None:
        future = self._auth_future
        self._auth_event_id = None
        if msg.accepted:
            self.authenticated = True
            log.info("%s: authenticated as %s", self.url,
                     self.signer.public_key if self.signer else "?")
        else:
            log.warning("%s: AUTH refused: %s", self.url, msg.message)
        if future is not None and not future.done():
            future.set_result((msg.accepted, msg.message))

    # --- hooks --------------------------------------------------------------------------

    def _on_connected(self) -> None:
        self.challenge = None
        self.authenticated = False
        self._auth_future = None
        self._auth_event_id = None
        super()._on_connected()

    def _on_disconnected(self) -> None:
        self.authenticated = False
        self._auth_event_id = None
        if self._auth_future is not None and not self._auth_future.done():
            self._auth_future.set_result((False, "error: connection lost during AUTH"))
        super()._on_disconnected()

    def _end_all(self, message: str) -> None:
        super()._end_all(message)
        if self._auth_future is not None and not self._auth_future.done():
            self._auth_future.set_result((False, message))

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, RelayOk) and msg.event_id == self._auth_event_id:
            self._on_auth_ok(msg)
        elif isinstance(msg, RelayAuth):
            self.challenge = msg.challenge
            self.authenticated = False
            self._set_state(self._state)  # wake authenticate() waiting for a challenge
            if self.auto_auth and self.signer is not None:
                self._start_auth()
        else:
            super()._dispatch(msg)
