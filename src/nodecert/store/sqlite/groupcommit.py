"""Group commit: many callers' rows, one transaction, one fsync.

A durable commit costs one fsync (about half a millisecond here, whatever the number of
rows in it). Committing every issuance on its own caps a store at one certificate per
fsync, however many cores there are. :class:`GroupCommitter` queues rows from any thread
and has one background thread commit whatever has queued while the previous commit was on
disk, so under load a batch holds every request that arrived meanwhile, and alone a row
waits for nothing but its own commit (there is no timer).

A row submitted on an event loop (``support.blocking.never_wait``) wakes an idle
committing thread only once the loop has run the other callbacks that were ready with it
(``when_loop_yields``): the requests that arrived together, whose rows then share one
commit and one fsync instead of one each. A committing thread that is busy takes the row
with its next batch, as before; a row submitted anywhere else wakes it at once.

Each caller gets a :class:`concurrent.futures.Future` that completes only after its row is
durable (or fails with the row's own error), so a certificate is still never handed out
before its ledger row is committed.

With ``max_wait_s``, a row waits at most that long from its submission to its outcome for
the locks of the store (``support.budget``): a batch that queued behind a batch that waited
out a lock held elsewhere gets only what is left of its oldest row's time, so the waits
of the two do not add up.

The committing thread survives anything a batch does (an error of the commit, a waiter that
gave up and cancelled its future): were it to die, every later row would wait for ever. An
error it did not expect is logged once, with its traceback, until a batch commits again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Generic, TypeVar

from nodecert.core.errors import NodecertError
from nodecert.support.blocking import must_not_wait, when_loop_yields
from nodecert.support.budget import time_budget

__all__ = ["GroupCommitter"]

T = TypeVar("T")

log = logging.getLogger("nodecert.store")

# Bounded so that one commit cannot grow without limit behind a slow disk; the rest waits
# for the next batch.
_MAX_BATCH = 256


class GroupCommitter(Generic[T]):
    """Commits queued items in batches on one background thread.

    Args:
        commit: Commits a batch in one transaction and returns, per item, None (durable)
            or the exception that item alone must fail with. It raises when the whole
            batch failed; every item then fails with that exception.
        name: The thread's name.
        max_wait_s: The time budget of a row, from its submission (see above); None for
            none.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[T]], Sequence[Exception | None]],
        *,
        name: str,
        max_wait_s: float | None = None,
    ) -> None:
        self._commit = commit
        self._name = name
        self._max_wait_s = max_wait_s
        self._queue: list[tuple[T, Future[None]]] = []
        self._since: list[float] = []  # When each queued row was submitted (monotonic).
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._owner_pid = 0
        self._stopping = False
        self._failing = False
        self._wake_pending = False  # A wake-up waits for the event loop (see above).

    def submit(self, item: T) -> Future[None]:
        """Queue ``item``; the future completes once it is committed."""
        future: Future[None] = _Row(self._wake)
        with self._ready:
            self._start()
            self._queue.append((item, future))
            self._since.append(time.monotonic())
            if not self._wake_pending:
                self._wake_pending = when_loop_yields(self._wake)
            on_loop = must_not_wait()
            # Only a row submitted on the loop waits for the loop's wake-up; one from any
            # other thread wakes the committer now, whatever the loop has pending.
            now = not (self._wake_pending and on_loop)
            if now:
                self._ready.notify()
        if now and on_loop:
            # A lone request's row, the committer woken at once: the loop lets go of the
            # GIL for a moment, so that the committer can take it and reach the disk (which
            # it waits for without the GIL) while the loop builds the reply, rather than
            # only once the loop waits (docs/performance.md: c=1 requests per second).
            time.sleep(0)
        return future

    def _wake(self) -> None:
        if not self._wake_pending:  # Read without the lock: looked at again under it.
            return
        with self._ready:
            if self._wake_pending:
                self._wake_pending = False
                self._ready.notify()

    def close(self) -> None:
        """Commit what is queued and stop the thread; a later submit starts a new one."""
        with self._ready:
            thread = self._thread if self._owner_pid == os.getpid() else None
            self._stopping = thread is not None
            self._ready.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        # Started on first use, in the process that uses it: a store opened before a fork
        # gets a committer thread of its own in the child.
        if self._owner_pid != os.getpid():
            self._queue, self._since, self._thread = [], [], None
            self._wake_pending = False
        if self._thread is None:
            self._owner_pid, self._stopping = os.getpid(), False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    # Under the lock: a submit from now on starts a new thread.
                    self._thread = None
                    return
                batch = self._queue[:_MAX_BATCH]
                oldest = self._since[0]
                del self._queue[:_MAX_BATCH], self._since[:_MAX_BATCH]
            if self._max_wait_s is None:
                self._commit_batch(batch)
                continue
            with time_budget(oldest + self._max_wait_s - time.monotonic()):
                self._commit_batch(batch)

    def _commit_batch(self, batch: list[tuple[T, Future[None]]]) -> None:
        try:
            outcomes: Sequence[Exception | None] = self._commit([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError("group committer: commit returned the wrong number of outcomes")
        except Exception as exc:  # Every waiter must hear of it.
            if not self._failing and not _expected(exc):
                log.exception("%s: a batch of %d failed", self._name, len(batch))
            self._failing = True
            outcomes = [exc] * len(batch)
        else:
            self._failing = False
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            try:
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
            except InvalidStateError:
                pass  # Its waiter cancelled it: nobody is left to tell.


class _Row(Future[None]):
    # A waiter that blocks on the row (``Commit.wait``) wakes the committing thread first:
    # were it on the event loop that holds the wake-up back, the two would wait for each
    # other for ever. An ``await`` of the row waits through a callback instead, and lets
    # the loop run the wake-up.
    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def result(self, timeout: float | None = None) -> None:
        # Also when it is done (asyncio reads a row's outcome that way): a wake-up that the
        # loop still holds back for other rows then reaches the committing thread sooner.
        self._wake()
        return super().result(timeout)


def _expected(exc: Exception) -> bool:
    # The store's own errors (unavailable, conflict) reach the waiters, who report them.
    return isinstance(exc, NodecertError)
