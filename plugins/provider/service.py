"""The provider service: announce, take requests, run them, publish results, get paid.

One task listens for requests (5050 and the dedicated kinds, filtered by ``#t``), decides at
once whether to take each (addressed to us or open, schema served, not expired, bid not
below the price, decryptable and valid, room in the queue: otherwise a ``status error``
feedback says why) and records the decision in the ledger before anything else, so a
request re-delivered by a relay or seen again after a restart is never run twice. Workers
(``concurrency`` of them) run accepted jobs through the job type's executor in a thread and
publish the result with an invoice; a settlement loop marks results paid when the invoice
settles, or unpaid when it expires or the buyer's verdict says ``fail``.

Restart rules: ``accepted`` jobs (never started) are queued again; ``running`` jobs whose
result was already signed are re-published, the others are failed with an ``error``
feedback (they may have half run: running them again would run them twice);
``result_published`` jobs go back to waiting for payment.

Encrypted requests (NIP-44 to this provider) get no trajectory: NIP-SA sessions and steps
are public events that would tie the buyer (``p``), the repository (``repo``) and the
request id to this provider's work, and an encrypted trajectory would still show who worked
for whom and when. So an encrypted job publishes only what NIP-90 itself needs: the result
(content encrypted to the buyer; ``e``/``p``/``request`` tags bind it to the request, whose
content is ciphertext) and 7000 feedback (``e``/``p``; its free text in clear only when it
is a fixed word or the result id, anything else goes encrypted to the buyer in the
content).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.errors import UserError
from oa_node.executors.jobtype import Execution, JobType
from oa_node.files import private_dir
from oa_node.ledger import Record, StateLedger, TransitionError
from oa_node.nostr import kinds, nip90
from oa_node.nostr.event import Event, EventTemplate
from oa_node.plugins.provider.announce import Announcer
from oa_node.plugins.provider.intake import BadRequest, Intake
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.plugins.provider.running import Runner
from oa_node.plugins.provider.settings import ProviderSettings
from oa_node.plugins.provider.settlement import Settlement
from oa_node.sandbox.base import CancelToken

if TYPE_CHECKING:
    from oa_node.node import Node
    from oa_node.sandbox.base import Sandbox

log = logging.getLogger("oa_node.provider")

__all__ = ["BadRequest", "Provider"]

FEEDBACK_TIMEOUT = 10.0


#: Feedback words that say nothing about an encrypted request's content.
PUBLIC_INFO = frozenset({"running", "queued", "busy", "paid", "internal error in the provider",
                         "expired before it could run", "encrypted to another provider",
                         "interrupted by a provider restart; not re-run"})
ENCRYPTED_INFO = "details encrypted to the buyer"


def _is_encrypted(request: Event) -> bool:
    return any(t and t[0] == "encrypted" for t in request.tags)


def _public_info(info: str) -> bool:
    """``info`` may be published in clear for an encrypted request."""
    if info in PUBLIC_INFO:
        return True
    word, _, rest = info.partition(" ")
    return word == "result" and len(rest) == 64 and all(c in "0123456789abcdef" for c in rest)



class Provider(Intake, Runner, Settlement, Announcer):
    """Runs until cancelled; ``ready`` is set once it announces and listens."""

    def __init__(self, node: Node, settings: ProviderSettings) -> None:
        self.node = node
        self.settings = settings
        self.ready = anyio.Event()
        self.ledger: StateLedger | None = None
        self.sandbox: Sandbox | None = None
        self.job_types: dict[str, JobType] = {}
        # accepted jobs wait here (ids, in order); workers take them one at a time
        self._send, self._receive = anyio.create_memory_object_stream[str](math.inf)
        self._waiting: set[str] = set()  # accepted, not yet taken by a worker
        self._active = 0  # taken by a worker
        self._running: dict[str, CancelToken] = {}
        self._settle_wakeup = anyio.Event()
        self._announcement: Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # --- identity and helpers -----------------------------------------------------------

    @property
    def pubkey(self) -> str:
        return self.node.signer.public_key

    @property
    def served(self) -> list[str]:
        return [s for s in self.settings.schemas if s in self.job_types]

    def request_kinds(self) -> list[int]:
        out = [kinds.JOB_REQUEST]
        if self.settings.dedicated_kinds:
            out += [nip90.DEDICATED_KINDS[s] for s in self.served if s in nip90.DEDICATED_KINDS]
        return out

    def _ledger(self) -> StateLedger:
        assert self.ledger is not None
        return self.ledger

    async def _publish(self, template: EventTemplate | Event, *, retry_for: float = 0.0) -> Event:
        """Sign (if needed) and publish; keep trying for ``retry_for`` seconds when no relay
        accepts (a relay restarting), with a bounded backoff."""
        event, _accepted = await self._try_publish(template, retry_for=retry_for)
        return event

    async def _try_publish(self, template: EventTemplate | Event, *,
                           retry_for: float = 0.0) -> tuple[Event, bool]:
        """:meth:`_publish` that also says whether any relay accepted the event."""
        event = template if isinstance(template, Event) else await self.node.signer.sign(template)
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            result = await self.node.pool.publish(event, FEEDBACK_TIMEOUT)
            if result.ok or time.monotonic() >= deadline:
                if not result.ok:
                    log.warning("event %s (kind %d) reached no relay: %s", event.id[:12],
                                event.kind, result.rejected)
                return event, result.ok
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _feedback(self, request: Event, status: str, info: str = "",
                        amount: nip90.Amount | None = None) -> None:
        """Publish a 7000. For an encrypted request only fixed words (or the id of the
        result, public anyway) go in clear; any other detail, which may quote the decrypted
        request, goes NIP-44 encrypted to the buyer in the content."""
        try:
            content, extra = "", []
            if info and _is_encrypted(request) and not _public_info(info):
                content = await self.node.signer.nip44_encrypt(request.pubkey, info)
                info, extra = ENCRYPTED_INFO, [["encrypted"]]
            await self._publish(nip90.feedback_template(request, status, info, amount=amount,
                                                        content=content, extra_tags=extra))
        except Exception:  # feedback is informative; a failure must not stop the job
            log.exception("feedback %s for %s not sent", status, request.id[:12])

    def _spawn(self, fn: Any, *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        node = self.node
        if not node.config["node"]["relays"]:
            raise UserError("[provider] enabled but [node] relays is empty: the provider "
                            "needs a relay to take jobs from")
        registered: dict[str, Any] = node.plugins.registries.job_types()
        self.job_types = {s: registered[s] for s in self.settings.schemas if s in registered}
        missing = [s for s in self.settings.schemas if s not in registered]
        if missing:
            log.warning("[provider] schemas %s have no registered job type; not served",
                        ", ".join(missing))
        if not self.served:
            raise UserError("[provider] serves no registered job type (check [provider] "
                            "schemas and that the sandbox plugin is loaded)")
        private_dir(node.data_dir)
        execution = node.capability(Execution)
        if execution is None:
            raise UserError("[provider] needs a sandbox to run jobs, and the sandbox plugin "
                            "is disabled")
        self.exec_settings = execution.executor_settings()
        self.sandbox = await anyio.to_thread.run_sync(execution.sandbox)
        self.ledger = open_provider_ledger(node.data_dir)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._recover()
                for i in range(self.settings.concurrency):
                    tg.start_soon(self._worker, name=f"provider-worker-{i}")
                tg.start_soon(self._settle_loop)
                tg.start_soon(self._listen_requests)
                tg.start_soon(self._listen_control)
                tg.start_soon(self._announce_loop, await self._announce())
                log.info("provider %s serving %s on %s", self.pubkey[:12],
                         ", ".join(self.served), ", ".join(node.pool.relays))
                self.ready.set()
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    async def _shutdown(self) -> None:
        for token in self._running.values():
            token.cancel()
        if self._announcement is not None:
            ann = self._announcement
            tags = [["e", ann.id], ["a", f"{ann.kind}:{ann.pubkey}:{ann.d_tag}"],
                    ["k", str(ann.kind)]]
            with anyio.move_on_after(5):
                try:
                    await self._publish(EventTemplate(kind=kinds.DELETION,
                                                      content="provider stopped", tags=tags))
                except Exception:
                    log.exception("announcement deletion not sent")
        if self.sandbox is not None:
            close = getattr(self.sandbox, "close", None)
            if close is not None:
                try:
                    await anyio.to_thread.run_sync(close)
                except Exception:
                    log.exception("closing the sandbox")
        if self.ledger is not None:
            self.ledger.close()

    # --- restart ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        ledger = self._ledger()
        for rec in ledger.in_states("received"):  # stopped between recording and deciding
            ledger.transition(rec.id, "declined", {"reason": "provider stopped before "
                                                   "deciding; not taken"})
        for rec in ledger.in_states("running"):
            await self._recover_running(rec)
        for rec in ledger.in_states("accepted"):
            self._enqueue(rec.id)
        if ledger.in_states("result_published"):
            self._settle_wakeup.set()

    async def _recover_running(self, rec: Record) -> None:
        ledger = self._ledger()
        request = Event.from_dict(rec.data["request"])
        if rec.data.get("result_event"):
            log.info("job %s: re-publishing its signed result after a restart", rec.id[:12])
            event = Event.from_dict(rec.data["result_event"])
            try:
                await self._publish_result(rec.id, event)
            except TransitionError:
                pass
            return
        ledger.transition(rec.id, "failed", {"reason": "interrupted by a provider restart"})
        self._refund(rec)
        log.warning("job %s was running when the provider stopped: failed, not re-run",
                    rec.id[:12])
        self._spawn(self._feedback, request, "error",
                    "interrupted by a provider restart; not re-run")
