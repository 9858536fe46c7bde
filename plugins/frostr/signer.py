"""``FrostSigner``: the node's :class:`~oa_node.signer.Signer` backed by k-of-n shares.

Events are signed by the group key (the node's npub) through the local share holder and
its peers; NIP-44 uses threshold ECDH, so no process ever holds the whole secret.
"""

from __future__ import annotations

import hashlib
import time

from oa_node.errors import UserError
from oa_node.nostr import nip44
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate, serialize_for_id
from oa_node.plugins.frostr.holder import (
    FrostHolder,
    SignResult,
    nip44_conversation_key_from_x,
)

#: Events up to this size travel with the sign request (as the session's hex ``content``) so
#: peers can apply kind policies; larger ones would push the request past the 64 KiB NIP-44
#: plaintexts bifrost peers accept, so only their id is sent (a default holder then refuses:
#: it signs a bare hash only with ``[frostr.policy] allow_bare_hashes``).
MAX_EVENT_WITH_REQUEST = 24 * 1024


class FrostSigner:
    """Signs through a running :class:`FrostHolder` (the ``frostr`` service)."""

    def __init__(self, holder: FrostHolder, *, ready_timeout: float = 30.0) -> None:
        self.holder = holder
        self.ready_timeout = ready_timeout
        #: who signed (and who cheated) for the last event
        self.last_result: SignResult | None = None

    @property
    def public_key(self) -> str:
        return self.holder.group.public_key

    @property
    def threshold(self) -> tuple[int, int]:
        """``(k, n)`` of the group, for NIP-SA profiles that describe a FROST identity."""
        group = self.holder.group
        return group.threshold, len(group.members)

    @property
    def signer_pubkeys(self) -> list[str]:
        """The share holders' x-only keys (how peers address each other), by index."""
        keys = self.holder.group.member_keys
        return [keys[i] for i in sorted(keys)]

    async def sign(self, template: EventTemplate) -> Event:
        created_at = int(time.time()) if template.created_at is None else template.created_at
        tags = [list(t) for t in template.tags]
        try:
            serialized = serialize_for_id(self.public_key, created_at, template.kind, tags,
                                          template.content)
        except ProtocolError as exc:
            raise UserError(f"cannot sign: {exc}") from None
        digest = hashlib.sha256(serialized).digest()
        await self.holder.wait_ready(self.ready_timeout)
        content = serialized if len(serialized) <= MAX_EVENT_WITH_REQUEST else None
        result = await self.holder.sign(digest, content=content)
        self.last_result = result
        event = Event(digest.hex(), self.public_key, created_at, template.kind, tags,
                      template.content, result.signature.hex())
        if not event.verify():  # the holder verified it already; an event is cheap to recheck
            raise UserError("frostr: the aggregate signature does not verify")
        return event

    async def _conversation_key(self, peer_pubkey: str) -> bytes:
        await self.holder.wait_ready(self.ready_timeout)
        return nip44_conversation_key_from_x(await self.holder.ecdh(peer_pubkey))

    async def nip44_encrypt(self, peer_pubkey: str, plaintext: str) -> str:
        return nip44.encrypt(plaintext, await self._conversation_key(peer_pubkey))

    async def nip44_decrypt(self, peer_pubkey: str, payload: str) -> str:
        return nip44.decrypt(payload, await self._conversation_key(peer_pubkey))
