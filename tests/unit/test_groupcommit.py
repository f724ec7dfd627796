"""GroupCommitter: rows queued meanwhile share one commit; each waiter hears its own outcome."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from nodecert.core.errors import ConflictError, StoreUnavailableError
from nodecert.store.sqlite.groupcommit import GroupCommitter
from nodecert.support.blocking import never_wait


class Disk:
    """A commit function whose first commit waits until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.fail_with: dict[str, Exception] = {}

    def commit(self, items: Sequence[str]) -> list[Exception | None]:
        if not self.batches:
            self.first_started.set()
            assert self.release.wait(10)
        self.batches.append(list(items))
        for item in items:
            if item in self.fail_with:
                raise self.fail_with[item]
        return [
            ConflictError(f"serial: {i} is already recorded") if "dup" in i else None for i in items
        ]


def test_rows_queued_during_a_commit_share_the_next_one() -> None:
    disk = Disk()
    committer = GroupCommitter(disk.commit, name="test-commit")
    first = committer.submit("a")
    assert disk.first_started.wait(10)
    waiting = [committer.submit(name) for name in ("b", "c", "d")]
    disk.release.set()
    first.result(10)
    for future in waiting:
        assert future.result(10) is None
    assert disk.batches == [["a"], ["b", "c", "d"]]
    committer.close()


def test_each_row_gets_its_own_outcome() -> None:
    disk = Disk()
    disk.release.set()
    committer = GroupCommitter(disk.commit, name="test-commit")
    futures = [committer.submit(name) for name in ("ok-1", "dup-2", "ok-3")]
    assert futures[0].result(10) is None
    with pytest.raises(ConflictError, match="dup-2"):
        futures[1].result(10)
    assert futures[2].result(10) is None
    committer.close()


def test_a_failed_commit_fails_every_row_of_its_batch_and_no_other() -> None:
    disk = Disk()
    disk.fail_with["b"] = StoreUnavailableError("store: disk I/O error")
    committer = GroupCommitter(disk.commit, name="test-commit")
    first = committer.submit("a")
    assert disk.first_started.wait(10)
    batch = [committer.submit(name) for name in ("b", "c")]
    disk.release.set()
    assert first.result(10) is None
    for future in batch:
        assert isinstance(future.exception(10), StoreUnavailableError)
    assert committer.submit("d").result(10) is None
    assert disk.batches == [["a"], ["b", "c"], ["d"]]
    committer.close()


def test_a_commit_that_miscounts_fails_its_rows() -> None:
    committer = GroupCommitter(lambda items: [], name="test-commit")
    with pytest.raises(RuntimeError, match="wrong number of outcomes"):
        committer.submit("a").result(10)
    committer.close()


def test_close_commits_what_is_queued_and_a_later_submit_starts_again() -> None:
    disk = Disk()
    committer = GroupCommitter(disk.commit, name="test-commit")
    first = committer.submit("a")
    assert disk.first_started.wait(10)
    queued = committer.submit("b")
    disk.release.set()
    committer.close()
    assert first.done() and queued.done() and queued.result() is None
    assert not any(t.name == "test-commit" for t in threading.enumerate())
    assert committer.submit("c").result(10) is None
    assert disk.batches[-1] == ["c"]
    committer.close()


def test_a_cancelled_waiter_does_not_kill_the_committing_thread() -> None:
    disk = Disk()
    committer = GroupCommitter(disk.commit, name="test-commit")
    first = committer.submit("a")
    assert disk.first_started.wait(10)
    abandoned = committer.submit("b")
    assert abandoned.cancel()  # Its waiter gave up while "a" was on disk.
    disk.release.set()
    first.result(timeout=10)
    assert committer.submit("c").result(timeout=10) is None  # The thread still commits.


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), StoreUnavailableError("store: full")]
)
def test_any_batch_error_reaches_its_waiters_is_logged_once_and_the_thread_goes_on(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    disk = Disk()
    disk.release.set()
    disk.fail_with = {"x1": error, "x2": error, "x3": error}
    committer = GroupCommitter(disk.commit, name="test-commit")
    for item in ("x1", "x2", "x3"):
        with pytest.raises(type(error)):
            committer.submit(item).result(timeout=10)
    assert committer.submit("ok").result(timeout=10) is None
    logged = [r for r in caplog.records if "a batch of" in r.getMessage()]
    # The store's own errors are reported by the waiters; anything else once, with its
    # traceback, however many batches it fails.
    assert len(logged) == (0 if isinstance(error, StoreUnavailableError) else 1)


def test_a_row_submitted_on_an_event_loop_waits_for_the_rows_that_arrived_with_it() -> None:
    disk = Disk()
    disk.release.set()
    committer = GroupCommitter(disk.commit, name="test-commit")
    assert committer.submit("idle").result(10) is None  # The thread now waits for work.

    async def requests_that_arrived_together() -> None:
        futures: list[Future[None]] = []
        with never_wait():  # As the direct route issues on the loop.
            futures.append(committer.submit("a"))
            # The other requests are still being signed. Had "a" woken the idle thread,
            # it would have committed "a" alone by now, and each row would pay an fsync.
            time.sleep(0.05)
            futures += [committer.submit("b"), committer.submit("c")]
        await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))

    asyncio.run(requests_that_arrived_together())
    assert disk.batches == [["idle"], ["a", "b", "c"]]
    # Anywhere else a row wakes the thread at once, as before.
    with never_wait():  # No running event loop here.
        assert committer.submit("d").result(10) is None
    assert disk.batches[-1] == ["d"]
    committer.close()


def test_a_blocking_wait_on_the_loop_wakes_the_thread_instead_of_waiting_for_ever() -> None:
    disk = Disk()
    disk.release.set()
    committer = GroupCommitter(disk.commit, name="test-commit")
    assert committer.submit("idle").result(10) is None

    async def a_synchronous_write_on_the_loop() -> None:
        with never_wait():
            # The loop cannot run the held-back wake-up while this waits: the wait must
            # wake the thread itself (else it would time out).
            assert committer.submit("a").result(10) is None

    asyncio.run(a_synchronous_write_on_the_loop())
    assert disk.batches == [["idle"], ["a"]]
    committer.close()


def test_a_row_from_another_thread_wakes_the_thread_while_the_loop_holds_its_wake_up() -> None:
    import concurrent.futures

    disk = Disk()
    disk.release.set()
    committer = GroupCommitter(disk.commit, name="test-commit")
    assert committer.submit("idle").result(10) is None

    async def a_loop_busy_while_a_pool_thread_writes() -> None:
        with never_wait():
            on_loop = committer.submit("a")  # Its wake-up waits for this callback to end.
            pooled: list[Future[None]] = []
            thread = threading.Thread(target=lambda: pooled.append(committer.submit("b")))
            thread.start()
            thread.join()
            # Waited on without result() (which wakes the thread itself): only the pool
            # thread's submit can have woken it, the loop being still in this callback.
            done, _ = concurrent.futures.wait(pooled, timeout=10)
            assert done == set(pooled)
        await asyncio.wrap_future(on_loop)

    asyncio.run(a_loop_busy_while_a_pool_thread_writes())
    assert disk.batches == [["idle"], ["a", "b"]]
    committer.close()


def test_a_lone_row_on_the_loop_lets_go_of_the_gil_for_the_committer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At c=1 the committer is woken at once; the loop then lets go of the GIL (sleep(0)),
    # so that the commit reaches the disk while the loop builds the reply. With other
    # requests in flight (the wake-up held back for them) or off the loop, it does not.
    from nodecert.store.sqlite import groupcommit
    from nodecert.support.blocking import count_requests_in

    disk = Disk()
    disk.release.set()
    committer = GroupCommitter(disk.commit, name="test-commit")
    assert committer.submit("idle").result(10) is None
    sleeps: list[float] = []
    real_sleep = time.sleep

    def recorded(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(groupcommit.time, "sleep", recorded)

    async def submit(requests_in_flight: int) -> None:
        count_requests_in(list(range(requests_in_flight)))
        with never_wait():
            future = committer.submit(f"with {requests_in_flight}")
        await asyncio.wrap_future(future)

    try:
        asyncio.run(submit(1))
        assert sleeps == [0]
        asyncio.run(submit(3))
        assert sleeps == [0]
        assert committer.submit("off the loop").result(10) is None
        assert sleeps == [0]
    finally:
        count_requests_in(None)
        committer.close()
    assert disk.batches[1:] == [["with 1"], ["with 3"], ["off the loop"]]
