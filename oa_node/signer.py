"""The ``Signer`` protocol: how the node signs events and encrypts to peers.

Everything the node publishes goes through a signer, so a node identity can be a local key
file (:class:`LocalSigner`) or k-of-n FROST shares (the frostr plugin) without the rest of
the code knowing which. Methods are async because a threshold signer talks to its peers.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Protocol, runtime_checkable

from oa_node.errors import UserError
from oa_node.files import write_private
from oa_node.nostr import nip19, nip44
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import public_key_hex


@runtime_checkable
class Signer(Protocol):
    @property
    def public_key(self) -> str:
        """x-only public key, 64 hex chars."""
        ...

    async def sign(self, template: EventTemplate) -> Event: ...

    async def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str: ...

    async def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str: ...


class KeyFileError(UserError):
    """A key file that is missing, unreadable or malformed."""


class LocalSigner:
    """A signer holding one secret key in memory."""

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) != 32:
            raise ValueError("secret key must be 32 bytes")
        self._secret = secret_key
        self._public = public_key_hex(secret_key)
        self._conversation_keys: dict[str, bytes] = {}

    @classmethod
    def generate(cls) -> LocalSigner:
        return cls(secrets.token_bytes(32))

    @property
    def public_key(self) -> str:
        return self._public

    @property
    def secret_key(self) -> bytes:
        return self._secret

    def sign_now(self, template: EventTemplate) -> Event:
        """Synchronous signing, for code that holds a LocalSigner specifically."""
        return sign_event(template, self._secret)

    async def sign(self, template: EventTemplate) -> Event:
        return sign_event(template, self._secret)

    def _conversation_key(self, peer: str) -> bytes:
        key = self._conversation_keys.get(peer)
        if key is None:
            key = nip44.get_conversation_key(self._secret, peer)
            self._conversation_keys[peer] = key
        return key

    async def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        return nip44.encrypt(plaintext, self._conversation_key(peer_pubkey))

    async def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        return nip44.decrypt(payload, self._conversation_key(peer_pubkey))

    # --- key files -------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> LocalSigner:
        return cls(read_key_file(path))


def parse_secret(text: str) -> bytes:
    """Accept 64 hex chars or an ``nsec1...`` string."""
    text = text.strip()
    if text.startswith("nsec1"):
        decoded = nip19.decode(text)
        if decoded.prefix != "nsec":
            raise KeyFileError("not an nsec")
        return bytes.fromhex(decoded.data)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError("expected 64 hex characters or an nsec1... string") from None
    if len(raw) != 32:
        raise KeyFileError("expected 64 hex characters or an nsec1... string")
    return raw


def read_key_file(path: str | Path) -> bytes:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(
            f"{p}: key file not found (create one with `oa-node keys generate`)") from None
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read key file: {exc}") from None
    try:
        return parse_secret(text)
    except (KeyFileError, Exception) as exc:
        raise KeyFileError(f"{p}: {exc}") from None


def write_key_file(path: str | Path, secret_key: bytes, *, force: bool = False) -> Path:
    """Write the key as hex with mode 0600; refuse to overwrite unless ``force``."""
    try:
        return write_private(path, secret_key.hex() + "\n", force=force)
    except FileExistsError as exc:
        raise KeyFileError(str(exc)) from None
