"""LocalSigner and key parsing: invalid keys are refused before they are written."""

from __future__ import annotations

import anyio
import pytest

from oa_node import signer as signer_mod
from oa_node.nostr import nip19
from oa_node.nostr.keys import CURVE_ORDER
from oa_node.signer import KeyFileError, LocalSigner, parse_secret

VALID = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"


@pytest.mark.parametrize("text", [
    "00" * 32,
    CURVE_ORDER.to_bytes(32, "big").hex(),
    "ff" * 32,
    nip19.nsec_encode(bytes(32)),
])
def test_parse_secret_refuses_out_of_range_keys(text: str) -> None:
    with pytest.raises(KeyFileError, match="not a valid secret key"):
        parse_secret(text)


def test_parse_secret_accepts_hex_and_nsec_in_either_case() -> None:
    nsec = nip19.nsec_encode(bytes.fromhex(VALID))
    for text in (VALID, VALID.upper(), nsec, nsec.upper(), f"  {nsec}\n"):
        assert parse_secret(text).hex() == VALID


def test_conversation_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signer_mod, "CONVERSATION_CACHE_SIZE", 3)
    me = LocalSigner.generate()
    peers = [LocalSigner.generate() for _ in range(5)]

    async def roundtrips() -> None:
        for peer in peers:
            payload = await me.nip44_encrypt(peer.public_key, "hi")
            assert await peer.nip44_decrypt(me.public_key, payload) == "hi"

    anyio.run(roundtrips)
    assert list(me._conversation_keys) == [p.public_key for p in peers[-3:]]
