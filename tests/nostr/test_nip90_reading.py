"""Reading what providers publish: the newest announcement per provider, a result's JSON
document (opened when encrypted). Real BIP-340 signatures and NIP-44 encryption."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from oa_node.nostr import nip90
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.signer import LocalSigner

pytestmark = pytest.mark.anyio

SCHEMA = "oa.sandbox_run.v1"


def announcement(signer: LocalSigner, identifier: str, created_at: int,
                 expiration: int | None = None) -> Event:
    template = nip90.handler_template(identifier, {SCHEMA: 1_000}, name=identifier,
                                      expiration=expiration)
    return signer.sign_now(dataclasses.replace(template, created_at=created_at))


def test_newest_handlers_keeps_the_newest_valid_one_per_provider_and_d() -> None:
    alice, bob = LocalSigner.generate(), LocalSigner.generate()
    now = int(time.time())
    old = announcement(alice, "a", now - 100)
    new = announcement(alice, "a", now - 10)
    other_d = announcement(alice, "b", now - 50)
    bobs = announcement(bob, "a", now - 20)
    expired = announcement(bob, "x", now - 5, expiration=now - 1)
    forged = dataclasses.replace(announcement(bob, "y", now), content="{}")
    not_an_ad = bob.sign_now(EventTemplate(kind=1, content="hi", tags=[], created_at=now))
    got = nip90.newest_handlers([old, bobs, new, other_d, expired, forged, not_an_ad], now)
    assert [i.event.id for i in got] == [new.id, bobs.id, other_d.id]
    assert nip90.newest_handlers([expired], now - 2)[0].event.id == expired.id


async def test_result_document_plain_and_encrypted() -> None:
    buyer, provider = LocalSigner.generate(), LocalSigner.generate()
    request = buyer.sign_now(nip90.request_template(SCHEMA, "{}"))
    doc = {"status": "success"}
    plain = provider.sign_now(nip90.result_template(request, json.dumps(doc), SCHEMA))
    assert await nip90.result_document(plain, buyer.nip44_decrypt) == doc
    sealed = await provider.nip44_encrypt(buyer.public_key, json.dumps(doc))
    encrypted = provider.sign_now(nip90.result_template(request, sealed, SCHEMA,
                                                        encrypted=True))
    assert await nip90.result_document(encrypted, buyer.nip44_decrypt) == doc


@pytest.mark.parametrize(("content", "error"), [
    ("[1, 2]", ValueError), ("not json", ValueError), ("", ValueError),
])
async def test_result_document_that_is_not_an_object_is_refused(
        content: str, error: type[Exception]) -> None:
    buyer, provider = LocalSigner.generate(), LocalSigner.generate()
    request = buyer.sign_now(nip90.request_template(SCHEMA, "{}"))
    result = provider.sign_now(nip90.result_template(request, content, SCHEMA))
    with pytest.raises(error):
        await nip90.result_document(result, buyer.nip44_decrypt)
    with pytest.raises(ProtocolError):
        await nip90.result_document(request, buyer.nip44_decrypt)  # not a result at all
