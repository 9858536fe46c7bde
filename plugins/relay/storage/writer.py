"""Group commit on one dedicated writer thread (the SQLite store's write path).

Why a thread of its own rather than a task that hands each batch to an executor: every
hop between the event loop and the writer costs a wakeup, and on the old path (a queue
task, ``run_in_executor``, shielded futures, a task per save) one event took about six
loop iterations plus two thread switches before its ``OK`` went out. Here the loop puts
the save on a ``SimpleQueue`` and gets one ``call_soon_threadsafe`` back per committed
batch, which resolves that batch's futures: the relay hangs its ``OK`` on them as plain
callbacks. The thread takes whatever has queued up while it committed the previous
batch (up to ``max_batch``), so the batch grows with the load (group commit), and every
future resolves only after its batch's ``COMMIT`` returned: ``OK true`` implies durable.
Other work on the writer connection (deletions, purges, the final checkpoint) runs on
the same thread, in queue order, through :meth:`WriterThread.call`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oa_node.store import DUPLICATE, SaveResult, StoreError

if TYPE_CHECKING:
    from oa_node.nostr import Event

log = logging.getLogger("oa_node.relay.storage")

#: Writes one batch in one transaction, on the writer thread; raises if it rolled back.
WriteBatch = Callable[[list[tuple["Event", str]]], list[SaveResult]]

#: Told, on the event loop, what a committed batch held and what each save did.
OnCommit = Callable[[list[tuple["Event", str]], list[SaveResult]], None]

_Save = tuple["Event", str, "asyncio.Future[SaveResult]"]


class _Call:
    __slots__ = ("args", "fn", "fut")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], fut: asyncio.Future[Any]):
        self.fn = fn
        self.args = args
        self.fut = fut


class WriterThread:
    """One thread owning the write connection: saves are batched into transactions."""

    def __init__(self, write_batch: WriteBatch, max_batch: int, name: str,
                 on_commit: OnCommit | None = None) -> None:
        self._write_batch = write_batch
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Save | _Call | None] = queue.SimpleQueue()
        self._pending: dict[str, asyncio.Future[SaveResult]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    # --- the event loop's side -------------------------------------------------------

    def is_pending(self, event_id: str) -> bool:
        """True while ``event_id`` is queued or being committed."""
        return event_id in self._pending

    def submit(self, event: Event, raw: str) -> asyncio.Future[SaveResult]:
        """Queue a save; the future resolves after its batch committed (or failed). A save
        of an id already queued resolves, after the first, to duplicate (or its error)."""
        loop = self._loop
        assert loop is not None, "writer not started"
        fut: asyncio.Future[SaveResult] = loop.create_future()
        first = self._pending.get(event.id)
        if first is not None:
            first.add_done_callback(lambda f: _chain_duplicate(f, fut))
            return fut
        self._pending[event.id] = fut
        self._queue.put((event, raw, fut))
        return fut

    async def save(self, event: Event, raw: str) -> SaveResult:
        return await asyncio.shield(self.submit(event, raw))

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on the writer thread after everything queued before it."""
        assert self._loop is not None, "writer not started"
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Call(fn, args, fut))
        return fut

    async def flush(self) -> None:
        """Wait until every save queued so far is committed (or failed)."""
        pending = list(self._pending.values())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def stop(self) -> None:
        """Commit everything queued before this call, then end the thread."""
        if self._thread is None or self._done is None:
            return
        self._queue.put(None)
        await asyncio.shield(self._done)
        self._thread.join()

    def _resolve(self, batch: list[_Save], results: list[SaveResult] | BaseException) -> None:
        pending = self._pending
        if isinstance(results, BaseException):  # the whole transaction rolled back
            log.warning("%s: write failed: %s", self._name, results)
            err = StoreError(f"write failed: {results}")
            for ev, _, fut in batch:
                pending.pop(ev.id, None)
                if not fut.done():
                    fut.set_exception(err)
            return
        if self._on_commit is not None:
            try:
                self._on_commit([(ev, raw) for ev, raw, _ in batch], results)
            except Exception:
                log.exception("%s: commit hook failed", self._name)
        for (ev, _, fut), res in zip(batch, results, strict=True):
            pending.pop(ev.id, None)
            if not fut.done():
                fut.set_result(res)

    # --- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        batch: list[_Save] = []
        try:
            while True:
                item = q.get()
                while True:
                    if item is None:
                        self._commit(batch)
                        return
                    if type(item) is _Call:
                        self._commit(batch)
                        batch = []
                        self._call(item)
                    else:
                        batch.append(item)  # type: ignore[arg-type]
                        if len(batch) >= self._max_batch:
                            break
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                self._commit(batch)
                batch = []
        finally:
            self._post(_set_done, self._done)

    def _commit(self, batch: list[_Save]) -> None:
        if not batch:
            return
        try:
            results: list[SaveResult] | BaseException = self._write_batch(
                [(ev, raw) for ev, raw, _ in batch]
            )
        except Exception as exc:
            results = exc
        self._post(self._resolve, batch, results)

    def _call(self, item: _Call) -> None:
        try:
            value = item.fn(*item.args)
        except Exception as exc:
            self._post(_set_exception, item.fut, exc)
        else:
            self._post(_set_result, item.fut, value)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _chain_duplicate(first: asyncio.Future[SaveResult], fut: asyncio.Future[SaveResult]) -> None:
    if fut.done():
        return
    exc = None if first.cancelled() else first.exception()
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(DUPLICATE)


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _set_done(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
