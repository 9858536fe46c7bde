"""Group commit on one dedicated writer thread (the SQLite store's write path).

Why a thread of its own rather than a task that hands each batch to an executor: every
hop between the event loop and the writer costs a wakeup, and on the old path (a queue
task, ``run_in_executor``, shielded futures, a task per save) one event took about six
loop iterations plus two thread switches before its ``OK`` went out. Here a save is a
callback: the loop hands saves to the thread through a ``SimpleQueue`` (at once when the
thread is idle, else gathered per loop iteration, one wakeup for many) and gets one
``call_soon_threadsafe`` back per committed batch, which calls each save's callback
(the relay's ``OK``) in turn. The thread takes whatever queued up while it committed the
previous batch (up to ``max_batch``), so a batch grows with the load (group commit);
every callback runs only after its batch's ``COMMIT`` returned: ``OK true`` implies
durable. Other work on the writer connection (deletions, purges, the final checkpoint)
runs on the same thread, in queue order, through :meth:`WriterThread.call`.

One exception: when saves come one at a time (one save in a loop iteration, the last
batch was one save, the thread idle), the store's ``inline`` writer commits it on the
event loop's thread, sparing the two wakeups of a hand-over on that OK's path; it never
waits for the write lock (the save goes to the thread instead). As soon as saves come
together the thread takes them again, so the loop is not held up by commits under load.
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
#: A save's outcome, called on the event loop after the commit: its result, or the
#: StoreError that failed it.
Done = Callable[["SaveResult | BaseException"], None]

_Items = list[tuple["Event", str]]


class WouldBlock(Exception):
    """An inline write could not start at once (the write lock is taken)."""


class _Call:
    __slots__ = ("args", "fn", "fut")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], fut: asyncio.Future[Any]):
        self.fn = fn
        self.args = args
        self.fut = fut


class WriterThread:
    """One thread owning the write connection: saves are batched into transactions."""

    def __init__(self, write_batch: WriteBatch, max_batch: int, name: str,
                 on_commit: OnCommit | None = None, inline: WriteBatch | None = None) -> None:
        self._write_batch = write_batch
        self._inline = inline
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Items | _Call | None] = queue.SimpleQueue()
        #: id -> callbacks waiting for that id's commit (a repeat adds one)
        self._pending: dict[str, list[Done]] = {}
        self._staged: _Items = []  # saves of this loop iteration not yet handed over
        self._busy = 0  # batches and calls handed over and not yet answered
        self._last = 1  # size of the last batch answered
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

    def submit(self, event: Event, raw: str, done: Done) -> None:
        """Queue a save; ``done`` is called after its batch committed (or failed). A save of
        an id already queued is answered, after the first, duplicate (or its error)."""
        waiters = self._pending.get(event.id)
        if waiters is not None:
            waiters.append(lambda r: done(r if isinstance(r, BaseException) else DUPLICATE))
            return
        self._pending[event.id] = [done]
        if not self._busy and not self._staged and (self._last > 1 or self._inline is None):
            # the thread is idle and saves come in together: wake it now
            self._busy += 1
            self._queue.put([(event, raw)])
            return
        staged = self._staged
        staged.append((event, raw))
        if len(staged) == 1:
            assert self._loop is not None, "writer not started"
            self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        staged = self._staged
        if len(staged) == 1 and not self._busy and self._last == 1 and self._inline:
            # one save in this loop iteration, the last batch was one save, the thread is
            # idle: saves come one at a time (a publisher waiting for each OK), so commit
            # here and spare the two thread wakeups of a hand-over (~100 us on the OK's
            # path); when saves come together, the loop is not held up by commits
            results: list[SaveResult] | BaseException
            try:
                results = self._inline(staged)
            except WouldBlock:  # another process holds the write lock: not on the loop
                results = []
            except Exception as exc:
                results = exc
            if results != []:
                self._staged = []
                self._resolve(staged, results, 0)
                return
        if self._staged:
            self._busy += 1
            self._queue.put(self._staged)
            self._staged = []

    async def save(self, event: Event, raw: str) -> SaveResult:
        assert self._loop is not None, "writer not started"
        fut: asyncio.Future[SaveResult] = self._loop.create_future()
        self.submit(event, raw, lambda r: _settle(fut, r))
        return await asyncio.shield(fut)

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on the writer thread after every save submitted before it."""
        assert self._loop is not None, "writer not started"
        self._hand_over()
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._busy += 1
        self._queue.put(_Call(fn, args, fut))
        return fut

    async def flush(self) -> None:
        """Wait until every save submitted so far is committed (or failed)."""
        if not self._pending:
            return
        assert self._loop is not None
        futs = []
        for waiters in self._pending.values():
            fut: asyncio.Future[Any] = self._loop.create_future()
            waiters.append(lambda _r, fut=fut: _settle(fut, None))
            futs.append(fut)
        await asyncio.gather(*futs)

    async def stop(self) -> None:
        """Commit everything submitted before this call, then end the thread."""
        if self._thread is None or self._done is None:
            return
        self._hand_over()
        self._queue.put(None)
        await asyncio.shield(self._done)
        self._thread.join()

    def _resolve(self, items: _Items, results: list[SaveResult] | BaseException,
                 handed: int) -> None:
        self._busy -= handed
        self._last = len(items)
        pending = self._pending
        if isinstance(results, BaseException):  # the whole transaction rolled back
            log.warning("%s: write failed: %s", self._name, results)
            err = StoreError(f"write failed: {results}")
            for ev, _ in items:
                _answer(pending.pop(ev.id, ()), err)
            return
        if self._on_commit is not None:
            try:
                self._on_commit(items, results)
            except Exception:
                log.exception("%s: commit hook failed", self._name)
        for (ev, _), res in zip(items, results, strict=True):
            _answer(pending.pop(ev.id, ()), res)

    # --- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        batch: _Items = []
        handed = 0
        try:
            while True:
                item: _Items | _Call | None = q.get()
                while True:
                    if item is None:
                        self._commit(batch, handed)
                        return
                    if type(item) is _Call:
                        self._commit(batch, handed)
                        batch, handed = [], 0
                        self._call(item)
                    else:
                        batch += item  # type: ignore[arg-type]
                        handed += 1
                        if len(batch) >= self._max_batch:
                            break
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                self._commit(batch, handed)
                batch, handed = [], 0
        finally:
            self._post(_settle, self._done, None)

    def _commit(self, batch: _Items, handed: int) -> None:
        if not handed:
            return
        try:
            results: list[SaveResult] | BaseException = (
                self._write_batch(batch) if batch else [])
        except Exception as exc:
            results = exc
        self._post(self._resolve, batch, results, handed)

    def _call(self, item: _Call) -> None:
        try:
            value = item.fn(*item.args)
        except Exception as exc:
            value = exc
        self._post(self._called, item.fut, value)

    def _called(self, fut: asyncio.Future[Any], outcome: Any) -> None:
        self._busy -= 1
        _settle(fut, outcome)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _answer(waiters: Any, outcome: SaveResult | BaseException) -> None:
    for done in waiters:
        try:
            done(outcome)
        except Exception:
            log.exception("a save's callback failed")


def _settle(fut: asyncio.Future[Any] | None, outcome: Any) -> None:
    if fut is None or fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
