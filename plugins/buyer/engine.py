"""The buyer: publish jobs, follow feedback and results, verify, label, pay only on a pass.

One subscription (feedback and results ``#p``-tagged to this node) serves every pending
job; a tick loop handles deadlines, jobs submitted by another process (the CLI), and
payment retries. Every step is a ledger transition, idempotent and durable, so a buyer
killed anywhere picks up where it stopped: results are fetched again from relays, a
verified job is paid on restart, and a second payment of the same invoice is answered by
the wallet with the first one (pay exactly once).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.canonical import canonical_json
from oa_node.errors import UserError
from oa_node.executors.jobtype import JobType
from oa_node.executors.schema import SchemaError
from oa_node.ledger import Record, StateLedger, TransitionError
from oa_node.nostr import kinds, nip90
from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.buyer.audit import Auditing
from oa_node.plugins.buyer.deciding import Deciding
from oa_node.plugins.buyer.escrow import offer
from oa_node.plugins.buyer.incoming import Incoming, max_results
from oa_node.plugins.buyer.ledger import FINAL, PENDING, open_buyer_ledger
from oa_node.plugins.buyer.paying import Paying
from oa_node.plugins.buyer.providers import choose_providers, gather_providers
from oa_node.plugins.buyer.reputation import Reputation
from oa_node.plugins.buyer.settings import BuyerSettings

if TYPE_CHECKING:
    from oa_node.node import Node

log = logging.getLogger("oa_node.buyer")

__all__ = ["Buyer", "BuyerBusy", "buyer_running", "max_results", "try_buyer_lock"]

Progress = Callable[[str, str, dict[str, Any]], None]
RESULT_KINDS = sorted({kinds.job_result_kind(k)
                       for k in (kinds.JOB_REQUEST, *nip90.DEDICATED_KINDS.values())})
PUBLISH_TIMEOUT = 10.0
#: Most seconds ``submit`` spends reading announcements to route an open job.
ROUTE_TIMEOUT = 5.0


LOCK_FILE = "buyer.lock"


class BuyerBusy(UserError):
    """Another buyer (the service, or a CLI's ``--wait``) already acts on this data dir."""


def try_buyer_lock(data_dir: Any) -> int | None:
    """The exclusive lock that makes one buyer per data dir (released when the process
    ends, however it ends); its file descriptor, or ``None`` when another holds it."""
    path = os.path.join(data_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def buyer_running(data_dir: Any) -> bool:
    """Whether another process (the buyer service, a ``--wait``) holds the buyer lock."""
    try:
        fd = os.open(os.path.join(data_dir, LOCK_FILE), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class Buyer(Paying, Incoming, Deciding, Auditing):
    """The buyer role over a node (its pool, signer, wallet, job types, data dir)."""

    def __init__(self, node: Node, settings: BuyerSettings,
                 ledger: StateLedger | None = None) -> None:
        self.node = node
        self.settings = settings
        settings.wallet(node)  # a missing wallet account: one line now, not at payment time
        self.ledger = ledger or open_buyer_ledger(node.data_dir)
        self.reputation = Reputation(node.data_dir)
        self._by_request: dict[str, str] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._sandbox: Any = None
        self.progress: Progress | None = None
        self.ready = anyio.Event()
        #: this buyer's run loop holds the lock and follows jobs (it will fund escrow)
        self.following = False

    @property
    def pubkey(self) -> str:
        return self.node.signer.public_key

    def job_type(self, schema: str) -> JobType:
        types: dict[str, Any] = self.node.plugins.registries.job_types()
        if schema not in types:
            raise UserError(f"unknown job schema {schema!r} (known: {', '.join(types)})")
        return types[schema]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._sandbox is not None:
            close = getattr(self._sandbox, "close", None)
            if close is not None:
                close()
        self.ledger.close()
        self.reputation.close()

    def _emit(self, job_id: str, what: str, info: dict[str, Any]) -> None:
        if self.progress is not None:
            try:
                self.progress(job_id, what, info)
            except Exception:
                log.exception("progress callback")

    async def _publish(self, event: Event) -> Any:
        return await self.node.pool.publish(event, PUBLISH_TIMEOUT)

    # --- submit ---------------------------------------------------------------------------

    async def submit(self, schema: str, doc: dict[str, Any], *, providers: Iterable[str] = (),
                     max_price_msat: int | None = None, encrypt: bool = False,
                     dedicated_kinds: bool | None = None, ttl_secs: int | None = None,
                     encrypt_results: bool | None = None, route: bool | None = None,
                     followed: bool | None = None) -> str:
        """Validate, sign and publish a job; returns its id (the first request's id).

        Without ``providers``, and unless ``route`` (default ``[buyer] route_open_jobs``)
        is false, the job is addressed to the providers :meth:`route` picks. ``followed``:
        a buyer will follow the job to fund its escrow (default: this buyer is running, or
        another process holds the buyer lock, e.g. the service)."""
        job_type = self.job_type(schema)
        try:
            model = job_type.request_model.from_dict(doc)
        except SchemaError as exc:
            raise UserError(f"invalid {schema} request: {exc}") from None
        redundancy = int(getattr(getattr(model, "verification", None), "redundancy", 1) or 1)
        providers = list(dict.fromkeys(providers))
        bid = self.settings.max_price_msat if max_price_msat is None else max_price_msat
        routed = False
        if not providers and (self.settings.route_open_jobs if route is None else route):
            providers = await self.route(schema, bid, redundancy)
            routed = bool(providers)
        cheats = [p for p in providers if self.reputation.cheated(p)]
        if cheats:
            raise UserError(f"provider {cheats[0]} was caught cheating by this buyer "
                            "(oa-node providers shows its record); not addressed again")
        if encrypt and not providers:
            raise UserError("--encrypt needs --provider: a request is encrypted to a provider")
        if encrypt and len(providers) < redundancy:
            raise UserError(f"an encrypted job with redundancy {redundancy} needs "
                            f"{redundancy} providers (one request is encrypted to each)")
        relays = self.node.config["node"]["relays"]
        if not relays:
            raise UserError("no relays: set [node] relays in the config")
        ttl = ttl_secs or self.settings.job_ttl_secs
        expiration = int(time.time()) + ttl
        dedicated = self.settings.dedicated_kinds if dedicated_kinds is None else dedicated_kinds
        content = canonical_json(doc)
        templates: list[EventTemplate] = []
        # the same job submitted twice in one second must still be two jobs (two ids)
        nonce = [["param", "nonce", secrets.token_hex(8)]]
        sealed = self.settings.encrypt_results if encrypt_results is None else encrypt_results
        if sealed and not encrypt:  # an encrypted request implies an encrypted result
            nonce.append(list(nip90.RESULT_ENCRYPTION_TAG))
        if encrypt:
            for p in providers:
                sealed = await self.node.signer.nip44_encrypt(p, content)
                templates.append(nip90.request_template(
                    schema, sealed, bid_msat=bid, relays=relays, provider=p, encrypted=True,
                    expiration=expiration, dedicated_kind=dedicated, extra_tags=nonce))
        else:
            templates.append(nip90.request_template(
                schema, content, bid_msat=bid, relays=relays, providers=providers,
                expiration=expiration, dedicated_kind=dedicated, extra_tags=nonce))
        if followed is None:
            followed = self.following or buyer_running(self.node.data_dir)
        escrow_tags, escrow = await offer(self, providers, followed)
        for t in templates:
            t.tags += escrow_tags
        events = [await self.node.signer.sign(t) for t in templates]
        job_id = events[0].id
        self.ledger.create(job_id, {
            "schema": schema, "doc": doc, "requests": [e.to_dict() for e in events],
            "request_ids": [e.id for e in events], "redundancy": redundancy,
            "max_price_msat": bid, "providers": providers, "routed": routed,
            "encrypted": encrypt,
            "expiration": expiration, "deadline": expiration + self.settings.result_grace_secs,
            "submitted_at": time.time(), "results": {}, "escrow": escrow,
        }, {"request_ids": [e.id for e in events], "escrow": sorted(escrow)})
        for e in events:
            self._by_request[e.id] = job_id
        accepted = 0
        for e in events:
            res = await self._publish(e)
            accepted += bool(res.ok)
            if not res.ok:
                log.warning("request %s reached no relay: %s", e.id[:12], res.rejected)
        self.ledger.update(job_id, published_at=time.time())
        if not accepted:
            raise UserError(f"job {job_id}: no relay accepted the request "
                            f"({', '.join(relays)}); it is recorded, cancel it or retry")
        return job_id

    async def route(self, schema: str, bid_msat: int, count: int) -> list[str]:
        """The providers an open job is addressed to (best record here, then price, among
        live announcements; never a cheater); ``[]`` when fewer than ``count`` qualify or
        no relay answered, and the job stays open."""
        try:
            with anyio.move_on_after(ROUTE_TIMEOUT):
                ads = await gather_providers(self.node.pool, schema=schema,
                                             timeout=ROUTE_TIMEOUT)
                picked = choose_providers(ads, self.reputation.all(), schema, bid_msat, count)
                log.info("open %s job routed to %s", schema,
                         ", ".join(p[:12] for p in picked) or "any provider")
                return picked
        except Exception as exc:  # relays are hostile or down: the job stays open
            log.warning("open job not routed: %s", exc)
        return []

    async def cancel(self, job_id: str) -> Record:
        """NIP-09 deletion of the job's requests; the job ends ``cancelled``."""
        rec = self.ledger.get(job_id)
        if rec is None:
            raise UserError(f"no job {job_id}")
        if rec.state not in ("published", "feedback", "result_received"):
            raise UserError(f"job {job_id[:12]} is {rec.state}: too late to cancel")
        requests = [Event.from_dict(r) for r in rec.data["requests"]]
        tags = [["e", r.id] for r in requests] + [["k", str(k)] for k in
                                                   sorted({r.kind for r in requests})]
        deletion = await self.node.signer.sign(
            EventTemplate(kind=kinds.DELETION, content="cancelled by the buyer", tags=tags))
        res = await self._publish(deletion)
        try:
            self.ledger.transition(job_id, "cancelled", {"deletion": deletion.id,
                                                         "relays": res.accepted_by})
        except TransitionError as exc:
            raise UserError(f"job {job_id[:12]} moved on meanwhile: {exc}") from None
        return self.ledger.get(job_id)  # type: ignore[return-value]

    # --- following ------------------------------------------------------------------------

    def _reindex(self) -> list[Record]:
        pending = self.ledger.in_states(*PENDING)
        for rec in pending:
            for rid in rec.data.get("request_ids", []):
                self._by_request[rid] = rec.id
        return pending

    def _move(self, job_id: str, state: str, receipt: dict[str, Any] | None = None,
              **data: Any) -> bool:
        """A ledger transition that another process (the CLI's ``--wait`` next to the
        service) may have made first: ``False`` then, as for a repeated one."""
        try:
            return self.ledger.transition(job_id, state, receipt, **data)
        except TransitionError as exc:
            log.debug("%s", exc)
            return False

    async def _safely(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run one job's step; a failure is logged and never stops the other jobs."""
        try:
            await fn(*args)
        except Exception:
            log.exception("job step %s failed", getattr(fn, "__name__", fn))

    def _lock(self, job_id: str) -> anyio.Lock:
        return self._locks.setdefault(job_id, anyio.Lock())

    async def run(self, *, only: Iterable[str] | None = None, stop_when_done: bool = False,
                  wait_for_lock: bool = False) -> None:
        """Follow pending jobs until cancelled (the service), or until every job of ``only``
        is done (``stop_when_done``: the CLI's ``--wait``).

        Only one buyer acts on a data dir (two would both pay, audit and judge the same
        jobs): without the lock this raises :class:`BuyerBusy`, or with ``wait_for_lock``
        (the service) waits until the other one ends."""
        self.node.data_dir.mkdir(parents=True, exist_ok=True)
        fd = try_buyer_lock(self.node.data_dir)
        if fd is None and not wait_for_lock:
            raise BuyerBusy(f"another buyer is running on {self.node.data_dir}")
        if fd is None:
            log.warning("another buyer holds %s; waiting for it to end",
                        self.node.data_dir / LOCK_FILE)
        while fd is None:
            await anyio.sleep(1.0)
            fd = try_buyer_lock(self.node.data_dir)
        self.following = True
        try:
            await self._follow(only, stop_when_done)
        finally:
            self.following = False
            os.close(fd)

    async def _follow(self, only: Iterable[str] | None, stop_when_done: bool) -> None:
        wanted = set(only) if only is not None else None
        pending = self._reindex()
        oldest = min((r.created_at for r in pending), default=time.time())
        filters = [{"kinds": [kinds.JOB_FEEDBACK, *RESULT_KINDS], "#p": [self.pubkey],
                    "since": int(oldest) - 60}]
        async with anyio.create_task_group() as tg:
            sub = self.node.pool.subscribe(filters)
            async with sub:
                tg.start_soon(self._consume, sub, tg)
                tg.start_soon(self._safely, self.import_trusted_labels)
                self.ready.set()
                for rec in pending:  # results already stored (a restart) are judged now
                    if rec.state in ("result_received", "verified"):
                        tg.start_soon(self._safely, self._evaluate, rec.id)
                while True:
                    await self._tick(tg)
                    if stop_when_done and wanted is not None and self.done(wanted):
                        break
                    await anyio.sleep(0.5)
                tg.cancel_scope.cancel()

    def done(self, wanted: set[str]) -> bool:
        for job_id in wanted:
            rec = self.ledger.get(job_id)
            if rec is None:
                continue
            if rec.state in FINAL:
                continue
            if rec.state == "verified" and rec.data.get("pay_error"):
                continue  # the service retries; the CLI reports it
            return False
        return True

    # --- housekeeping -----------------------------------------------------------------------

    async def _tick(self, tg: anyio.abc.TaskGroup) -> None:
        now = time.time()
        for rec in self._reindex():
            if rec.state in ("published", "feedback") and now > rec.data.get("deadline", now):
                if self._move(rec.id, "expired", {"reason": "no result in time"}):
                    self._emit(rec.id, "expired", {})
            elif rec.state == "result_received" and now > rec.data.get("deadline", now):
                tg.start_soon(self._safely, self._evaluate, rec.id, True)
            elif rec.state == "verified":
                last = rec.data.get("pay_error_at") or 0
                if (not self._lock(rec.id).locked()
                        and now - last >= self.settings.pay_retry_secs):
                    tg.start_soon(self._safely, self.pay, rec.id)
