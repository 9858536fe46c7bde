"""The ``Signer`` protocol: how the node signs events and encrypts to peers.

Everything the node publishes goes through a signer, so a node identity can be a local key
file (:class:`LocalSigner`) or k-of-n FROST shares (the frostr plugin) without the rest of
the code knowing which. Methods are async because a threshold signer talks to its peers.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

from oa_node.errors import UserError
from oa_node.files import UnsafeFileError, read_private, write_private
from oa_node.nostr import nip19, nip44
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import CURVE_ORDER, generate_secret_key, public_key_hex


@runtime_checkable
class Signer(Protocol):
    @property
    def public_key(self) -> str:
        """x-only public key, 64 hex chars."""
        ...

    async def sign(self, template: EventTemplate) -> Event: ...

    async def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str: ...

    async def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str: ...


CONVERSATION_CACHE_SIZE = 4096  # NIP-44 conversation keys kept per LocalSigner


class KeyFileError(UserError):
    """A key file that is missing, unreadable or malformed."""


class LocalSigner:
    """A signer holding one secret key in memory."""

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) != 32:
            raise ValueError("secret key must be 32 bytes")
        self._secret = secret_key
        self._public = public_key_hex(secret_key)
        self._conversation_keys: OrderedDict[str, bytes] = OrderedDict()

    @classmethod
    def generate(cls) -> LocalSigner:
        return cls(generate_secret_key())

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
        """ECDH per peer is the costly part of NIP-44, so keys are kept, in a bounded LRU:
        peers are chosen by whoever sends us a request, so the cache must not grow freely."""
        cache = self._conversation_keys
        key = cache.get(peer)
        if key is None:
            key = nip44.get_conversation_key(self._secret, peer)
            cache[peer] = key
            if len(cache) > CONVERSATION_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(peer)
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
    """Accept 64 hex chars or an ``nsec1...`` string holding a valid secp256k1 secret key.

    The range is checked here, before anything is written: a zero or out-of-range key would
    otherwise be saved and only fail later, when the node tries to sign.
    """
    text = text.strip()
    if text[:5].lower() == "nsec1":
        decoded = nip19.decode(text)
        if decoded.prefix != "nsec":
            raise KeyFileError("not an nsec")
        raw = bytes.fromhex(str(decoded.data))
    else:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise KeyFileError("expected 64 hex characters or an nsec1... string") from None
        if len(raw) != 32:
            raise KeyFileError("expected 64 hex characters or an nsec1... string")
    if not 0 < int.from_bytes(raw, "big") < CURVE_ORDER:
        raise KeyFileError("not a valid secret key (must be between 1 and the curve order - 1)")
    return raw


def read_key_file(path: str | Path) -> bytes:
    p = Path(path)
    try:
        text = read_private(p, "key file")
    except UnsafeFileError as exc:
        raise KeyFileError(str(exc)) from None
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
