"""In-process rogue publishers for the adversarial marketplace tests.

A :class:`Rogue` is a provider key with its own connection in the ledger wallet (so the
test can read, from the wallet's side, exactly what it was paid) that answers a buyer's
requests with results it signs itself: forged successes, zero-work errors, copies of
another provider's result, bursts of valid results. Nothing here is a mock: the events are
real BIP-340 signed NIP-90 results on the real relay, the invoices real ledger invoices.
"""

from __future__ import annotations

import copy
from typing import Any

import anyio

from oa_node.canonical import canonical_json
from oa_node.client import RelayPool
from oa_node.executors.hashing import (
    attestation,
    input_sha256,
    output_sha256,
    verification_digest,
)
from oa_node.nostr import kinds, nip90
from oa_node.nostr.event import Event
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.signer import LocalSigner


def sealed(doc: dict[str, Any], request: dict[str, Any], provider: str) -> dict[str, Any]:
    """``doc`` with provenance recomputed: internally consistent, whatever it claims."""
    doc = copy.deepcopy(doc)
    doc.pop("provenance", None)
    doc["provenance"] = {"provider_pubkey": provider, "input_sha256": input_sha256(request),
                         "output_sha256": output_sha256(doc), "executed_at": 1,
                         "duration_ms": 10,
                         "attestation": attestation(provider, verification_digest(doc))}
    return doc


def forged_success(request: dict[str, Any], provider: str) -> dict[str, Any]:
    """``oa.sandbox_run.v1``: every command "exited 0", nothing was run."""
    runs = [{"cmd": c["cmd"], "exit_code": 0, "duration_ms": 7, "stdout_sha256": "a" * 64,
             "stderr_sha256": "b" * 64} for c in request["commands"]]
    return sealed({"status": "success", "error": None,
                   "env_info": {"image_digest": request["sandbox"]["image_digest"],
                                "hostname": "h", "system_info": {}},
                   "runs": runs, "artifacts": []}, request, provider)


def zero_work(request: dict[str, Any], provider: str, status: str = "error") -> dict[str, Any]:
    """An instant ``status: error`` (or ``cancelled``) with no runs."""
    return sealed({"status": status, "error": "nothing done", "runs": [], "artifacts": [],
                   "env_info": {"image_digest": request["sandbox"]["image_digest"]}},
                  request, provider)


class Rogue:
    """A provider key that signs whatever it likes, paid into wallet connection ``name``."""

    def __init__(self, wallet: Ledger, name: str, relay: str, price: int) -> None:
        self.signer = LocalSigner.generate()
        self.wallet, self.name, self.relay, self.price = wallet, name, relay, price
        self.conn = wallet.create_connection(name)[0]

    @property
    def pubkey(self) -> str:
        return self.signer.public_key

    def balance(self) -> int:
        return self.wallet.balance(self.conn.id)

    def invoice(self, amount: int | None = None) -> str:
        return str(self.wallet.invoice(self.conn.id, amount or self.price,
                                       description="rogue", expiry=600)["bolt11"])

    async def result(self, request: Event, doc: dict[str, Any], *, amount: int | None = None,
                     invoice_amount: int | None = None, encrypt: bool | None = None,
                     content: str | None = None) -> Event:
        """A signed result for ``request`` carrying ``doc`` and a real invoice (encrypted
        to the buyer when the request asks, unless ``encrypt`` says otherwise; ``content``
        replaces the content outright, e.g. someone else's ciphertext)."""
        job = nip90.parse_request(request)
        sealed = nip90.wants_encrypted_result(request) if encrypt is None else encrypt
        if content is None:
            content = canonical_json(doc)
            if sealed:
                content = await self.signer.nip44_encrypt(job.buyer, content)
        bolt11 = self.invoice(invoice_amount or amount)
        return await self.signer.sign(nip90.result_template(
            request, content, job.schema, amount=nip90.Amount(amount or self.price, bolt11),
            encrypted=sealed))

    async def publish(self, *events: Event) -> None:
        """All ``events`` in one burst (one connection, sent without waiting in between)."""
        async with RelayPool([self.relay]) as pool:
            async with anyio.create_task_group() as tg:
                for ev in events:
                    tg.start_soon(pool.publish, ev, 10)


async def labels_on(relay: str, result_ids: list[str]) -> list[tuple[str, str, str]]:
    """Every oa-node verdict label on the relay naming one of ``result_ids``."""
    async with RelayPool([relay]) as pool:
        found = await pool.query({"kinds": [kinds.LABEL], "#e": result_ids}, 5)
    return sorted(v for v in (nip90.parse_verdict(x) for x in found) if v is not None)
