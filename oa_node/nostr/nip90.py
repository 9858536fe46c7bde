"""NIP-90 typed jobs, NIP-89 capability ads and NIP-32 verdict labels (pure).

oa-node's job events: a request (5050, or the dedicated kind of its schema)
carries the schema's request as canonical JSON, NIP-44 encrypted when it names a provider
and asks for it; the schema id travels in ``["param","schema",<id>]`` and ``["t",<id>]`` so
relays can filter. Results answer at request kind + 1000; feedback is 7000. The schema id,
not the kind, identifies the job. Building and parsing live here; encryption is the caller's
(it needs the signer), so parsers hand back the raw content and an ``encrypted`` flag.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from oa_node.canonical import canonical_json
from oa_node.nostr import kinds
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex
from oa_node.nostr.nip40 import is_expired

#: dedicated request kinds of the OpenAgents schemas (answered at +1000 like 5050)
DEDICATED_KINDS: dict[str, int] = {
    "oa.sandbox_run.v1": kinds.JOB_REQUEST_SANDBOX_RUN,
    "oa.repo_index.v1": kinds.JOB_REQUEST_REPO_INDEX,
}

FEEDBACK_STATUSES = ("payment-required", "processing", "error", "success", "partial")
VERDICT_NAMESPACE = "oa.verification"
#: a request tag asking for the result NIP-44 encrypted to the buyer: nobody else can read
#: it, so nobody can copy it and claim the work (encrypted requests imply it)
RESULT_ENCRYPTION_TAG = ["param", "result_encryption", "nip44"]


#: a request tag ``["escrow", payment_hash, provider]``: the buyer offers escrow to that
#: provider (a hold invoice for the hash, whose preimage only the buyer knows)
ESCROW_TAG = "escrow"


def escrow_hash(request: Event, provider: str) -> str | None:
    """The payment hash a request offers ``provider`` for a hold invoice, if any."""
    for t in request.tags:
        if len(t) >= 3 and t[0] == ESCROW_TAG and t[2] == provider and len(t[1]) == 64 \
                and all(c in "0123456789abcdef" for c in t[1]):
            return t[1]
    return None


def release_template(request_id: str, provider: str, sealed_preimage: str) -> EventTemplate:
    """The buyer's escrow release: the preimage, NIP-44 encrypted to the provider."""
    return EventTemplate(kind=kinds.ESCROW_RELEASE, content=sealed_preimage,
                         tags=[["e", request_id], ["p", provider]])


def wants_encrypted_result(request: Event) -> bool:
    """Whether a request asks for its result encrypted to the buyer."""
    return any(t[:3] == RESULT_ENCRYPTION_TAG or (t and t[0] == "encrypted")
               for t in request.tags)


def _invalid(reason: str) -> ProtocolError:
    return ProtocolError("invalid", reason)


def _non_negative(value: str, what: str) -> int:
    """Plain ASCII decimal digits only: ``int()`` would also take signs, spaces, ``_`` and
    other scripts' digits, which no other NIP-90 implementation writes."""
    if value.isascii() and value.isdigit() and len(value) <= 30:
        return int(value)
    digits = value[1:]
    if value[:1] == "-" and digits.isascii() and digits.isdigit():
        raise _invalid(f"{what} is negative")
    raise _invalid(f"{what} is not an integer: {value[:40]!r}")


def _int_tag(event: Event, name: str) -> int | None:
    value = event.first_tag_value(name)
    return None if value is None else _non_negative(value, f"{name} tag")


# --- requests -----------------------------------------------------------------------------


@dataclass
class JobRequest:
    """A parsed request; ``content`` is still encrypted when ``encrypted`` is true."""

    event: Event
    schema: str
    content: str
    encrypted: bool
    bid_msat: int | None
    relays: list[str]
    providers: list[str]
    expiration: int | None

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def buyer(self) -> str:
        return self.event.pubkey

    @property
    def result_kind(self) -> int:
        return kinds.job_result_kind(self.event.kind)

    def is_for(self, provider_pubkey: str) -> bool:
        """Open jobs (no ``p``) are for everyone; addressed ones only for their ``p``."""
        return not self.providers or provider_pubkey in self.providers


def request_template(
    schema: str,
    content: str,
    *,
    bid_msat: int | None = None,
    relays: list[str] | tuple[str, ...] = (),
    provider: str | None = None,
    encrypted: bool = False,
    expiration: int | None = None,
    dedicated_kind: bool = False,
    created_at: int | None = None,
    providers: list[str] | tuple[str, ...] = (),
    extra_tags: list[list[str]] | None = None,
) -> EventTemplate:
    """A job request; ``content`` is the canonical request JSON or its NIP-44 payload.

    ``provider`` (or several ``providers``, for redundancy without encryption) become ``p``
    tags; an encrypted request names exactly one provider, the one it is encrypted to.
    """
    named = [*([provider] if provider is not None else []), *providers]
    if encrypted and len(named) != 1:
        raise ValueError("an encrypted request must name exactly one provider")
    kind = DEDICATED_KINDS.get(schema, kinds.JOB_REQUEST) if dedicated_kind else kinds.JOB_REQUEST
    tags: list[list[str]] = [["param", "schema", schema], ["t", schema]]
    if bid_msat is not None:
        tags.append(["bid", str(bid_msat)])
    if relays:
        tags.append(["relays", *relays])
    tags += [["p", p] for p in dict.fromkeys(named)]
    if encrypted:
        tags.append(["encrypted"])
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    tags += extra_tags or []
    return EventTemplate(kind=kind, content=content, tags=tags, created_at=created_at)


def parse_request(event: Event) -> JobRequest:
    if not kinds.is_job_request(event.kind):
        raise _invalid(f"kind {event.kind} is not a job request")
    schema = next(
        (t[2] for t in event.tags if len(t) >= 3 and t[0] == "param" and t[1] == "schema"), None
    ) or event.first_tag_value("t")
    if not schema:
        raise _invalid("job request has no schema (param schema or t tag)")
    relays = next((t[1:] for t in event.tags if t and t[0] == "relays"), [])
    providers = [p for p in event.tag_values("p") if is_hex(p, 32)]
    return JobRequest(
        event=event,
        schema=schema,
        content=event.content,
        encrypted=any(t and t[0] == "encrypted" for t in event.tags),
        bid_msat=_int_tag(event, "bid"),
        relays=list(relays),
        providers=providers,
        expiration=_int_tag(event, "expiration"),
    )


# --- feedback and results -------------------------------------------------------------------


@dataclass
class Amount:
    msat: int
    bolt11: str | None = None

    def tag(self) -> list[str]:
        return ["amount", str(self.msat), *([self.bolt11] if self.bolt11 else [])]


def _amount(event: Event) -> Amount | None:
    tag = next((t for t in event.tags if t and t[0] == "amount"), None)
    if tag is None or len(tag) < 2:
        return None
    msat = _non_negative(tag[1], "amount")
    return Amount(msat, tag[2] if len(tag) > 2 and tag[2] else None)


def feedback_template(
    request: Event,
    status: str,
    info: str = "",
    *,
    amount: Amount | None = None,
    content: str = "",
    extra_tags: list[list[str]] | None = None,
) -> EventTemplate:
    if status not in FEEDBACK_STATUSES:
        raise ValueError(f"unknown feedback status {status!r}")
    tags = [["status", status, *([info] if info else [])], ["e", request.id], ["p", request.pubkey]]
    if amount is not None:
        tags.append(amount.tag())
    tags += extra_tags or []
    return EventTemplate(kind=kinds.JOB_FEEDBACK, content=content, tags=tags)


@dataclass
class JobFeedback:
    event: Event
    request_id: str
    status: str
    info: str
    amount: Amount | None

    @property
    def provider(self) -> str:
        return self.event.pubkey


def parse_feedback(event: Event) -> JobFeedback:
    if event.kind != kinds.JOB_FEEDBACK:
        raise _invalid(f"kind {event.kind} is not job feedback")
    status_tag = next((t for t in event.tags if t and t[0] == "status"), None)
    if status_tag is None or len(status_tag) < 2 or status_tag[1] not in FEEDBACK_STATUSES:
        raise _invalid("feedback without a valid status tag")
    request_id = event.first_tag_value("e")
    if not request_id or not is_hex(request_id, 32):
        raise _invalid("feedback without an e tag for its request")
    return JobFeedback(
        event,
        request_id,
        status_tag[1],
        status_tag[2] if len(status_tag) > 2 else "",
        _amount(event),
    )


def result_template(
    request: Event,
    content: str,
    schema: str,
    *,
    amount: Amount | None = None,
    encrypted: bool = False,
    extra_tags: list[list[str]] | None = None,
) -> EventTemplate:
    """A result at request kind + 1000 bound to its request (``e``, ``request``)."""
    tags = [["request", request.to_json()], ["e", request.id], ["p", request.pubkey], ["t", schema]]
    if amount is not None:
        tags.append(amount.tag())
    if encrypted:
        tags.append(["encrypted"])
    tags += extra_tags or []
    return EventTemplate(kind=kinds.job_result_kind(request.kind), content=content, tags=tags)


@dataclass
class JobResult:
    event: Event
    request_id: str
    request: Event | None
    content: str
    encrypted: bool
    amount: Amount | None
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.event.pubkey


def parse_result(event: Event) -> JobResult:
    if not kinds.is_job_request(event.kind - kinds.JOB_RESULT_OFFSET):
        raise _invalid(f"kind {event.kind} is not a job result")
    request_id = event.first_tag_value("e")
    if not request_id or not is_hex(request_id, 32):
        raise _invalid("result without an e tag for its request")
    raw_request = event.first_tag_value("request")
    request = Event.from_json(raw_request) if raw_request else None
    if request is not None and request.id != request_id:
        raise _invalid("result's request tag does not match its e tag")
    extra = {t[0]: t[1:] for t in event.tags if t and t[0] in ("trajectory", "trajectory_hash")}
    return JobResult(
        event,
        request_id,
        request,
        event.content,
        any(t and t[0] == "encrypted" for t in event.tags),
        _amount(event),
        extra,
    )


async def result_document(event: Event,
                          decrypt: Callable[[str, str], Awaitable[str]]) -> dict[str, Any]:
    """The JSON object a result carries; an encrypted one is opened with
    ``decrypt(provider_pubkey, payload)`` (the node signer's ``nip44_decrypt``). Raises
    ProtocolError, ValueError or TypeError when the result is not readable as one."""
    parsed = parse_result(event)
    text = parsed.content
    if parsed.encrypted:
        text = await decrypt(event.pubkey, parsed.content)
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


# --- NIP-89 capability ads ----------------------------------------------------------------------


@dataclass
class HandlerInfo:
    """A provider's NIP-89 announcement: schemas it serves and its prices."""

    event: Event
    identifier: str
    kinds: list[int]
    schemas: list[str]
    pricing_msat: dict[str, int]
    limits: dict[str, Any]
    relays: list[str]
    name: str

    @property
    def provider(self) -> str:
        return self.event.pubkey


def handler_template(
    identifier: str,
    schemas: dict[str, int],
    *,
    name: str = "",
    about: str = "",
    limits: dict[str, Any] | None = None,
    relays: list[str] | tuple[str, ...] = (),
    expiration: int | None = None,
    dedicated_kinds: bool = True,
) -> EventTemplate:
    """Kind 31990 with ``k`` per served kind (5050, plus each schema's dedicated kind
    unless ``dedicated_kinds`` is off), ``t`` per schema, prices in the content."""
    served = {kinds.JOB_REQUEST}
    if dedicated_kinds:
        served |= {DEDICATED_KINDS[s] for s in schemas if s in DEDICATED_KINDS}
    tags: list[list[str]] = [["d", identifier]]
    tags += [["k", str(k)] for k in sorted(served)]
    tags += [["t", s] for s in sorted(schemas)]
    if relays:
        tags.append(["relays", *relays])
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    content = canonical_json(
        {
            "name": name,
            "about": about,
            "pricing": {s: {"amount_msat": p, "unit": "msat"} for s, p in sorted(schemas.items())},
            "limits": limits or {},
        }
    )
    return EventTemplate(kind=kinds.HANDLER_INFO, content=content, tags=tags)


def parse_handler(event: Event) -> HandlerInfo:
    if event.kind != kinds.HANDLER_INFO:
        raise _invalid(f"kind {event.kind} is not a handler announcement")
    try:
        meta = json.loads(event.content) if event.content else {}
    except ValueError:
        raise _invalid("handler content is not JSON") from None
    if not isinstance(meta, dict):
        raise _invalid("handler content is not a JSON object")
    pricing: dict[str, int] = {}
    offered = meta.get("pricing")
    for schema, price in (offered.items() if isinstance(offered, dict) else ()):
        amount = price.get("amount_msat") if isinstance(price, dict) else price
        if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 0:
            pricing[str(schema)] = amount
    served = []
    for k in event.tag_values("k"):
        if k.isascii() and k.isdigit() and len(k) <= 5:
            served.append(int(k))
    limits = meta.get("limits")
    return HandlerInfo(
        event=event,
        identifier=event.d_tag,
        kinds=served,
        schemas=event.tag_values("t"),
        pricing_msat=pricing,
        limits=limits if isinstance(limits, dict) else {},
        relays=next((t[1:] for t in event.tags if t and t[0] == "relays"), []),
        name=str(meta.get("name") or ""),
    )


def newest_handlers(events: Iterable[Event], now: int | None = None) -> list[HandlerInfo]:
    """The newest valid announcement per (provider, ``d`` tag), newest first; an event with
    a bad id or signature, an expired one or one that is not an announcement is skipped."""
    newest: dict[tuple[str, str], HandlerInfo] = {}
    for ev in events:
        if not ev.verify() or is_expired(ev, now):
            continue
        try:
            info = parse_handler(ev)
        except ProtocolError:
            continue
        key = (info.provider, info.identifier)
        if key not in newest or newest[key].event.created_at < ev.created_at:
            newest[key] = info
    return sorted(newest.values(), key=lambda i: -i.event.created_at)


# --- NIP-32 verdicts --------------------------------------------------------------------------


def verdict_template(
    result: Event, request_id: str, verdict: str, reason: str = "", schema: str = ""
) -> EventTemplate:
    """A buyer's signed verdict on a result (``pass`` / ``fail``), reputation input."""
    tags = [
        ["L", VERDICT_NAMESPACE],
        ["l", verdict, VERDICT_NAMESPACE],
        ["e", result.id],
        ["e", request_id],
        ["p", result.pubkey],
    ]
    if schema:
        tags.append(["t", schema])
    return EventTemplate(kind=kinds.LABEL, content=reason, tags=tags)


def parse_verdict(event: Event) -> tuple[str, str, str] | None:
    """``(verdict, result_id, provider)`` of an oa-node verdict label, else ``None``."""
    if event.kind != kinds.LABEL:
        return None
    label = next(
        (t for t in event.tags if len(t) >= 3 and t[0] == "l" and t[2] == VERDICT_NAMESPACE), None
    )
    ids = event.tag_values("e")
    provider = event.first_tag_value("p")
    if label is None or not ids or provider is None:
        return None
    return label[1], ids[0], provider
