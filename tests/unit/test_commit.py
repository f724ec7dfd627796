"""Commit: what a ledger write returns, to wait for or to await on an event loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from nodecert.core.errors import ConflictError
from nodecert.core.values import Commit


def test_a_failed_commit_raises_its_error_whether_waited_for_or_awaited() -> None:
    failed = Commit.failed(ConflictError("serial: 01 is already recorded"))
    with pytest.raises(ConflictError, match="01"):
        failed.wait()

    async def awaiting() -> None:
        await failed

    with pytest.raises(ConflictError, match="01"):
        asyncio.run(awaiting())


def test_waiting_on_a_commit_that_never_completes_times_out() -> None:
    with pytest.raises(TimeoutError):
        Commit(Future()).wait(timeout=0.01)


def test_a_done_commit_is_done() -> None:
    Commit.done().wait(timeout=0)


def test_awaiting_leaves_the_loop_free_until_another_thread_commits() -> None:
    future: Future[None] = Future()
    order: list[str] = []

    async def waiting() -> None:
        await Commit(future)
        order.append("committed")

    async def main() -> None:
        waiter = asyncio.ensure_future(waiting())
        await asyncio.sleep(0)
        assert not waiter.done()
        order.append("loop free")  # Another request is served meanwhile.
        # The commit completes on another thread, as the group committer's does.
        threading.Thread(target=future.set_result, args=(None,)).start()
        await asyncio.wait_for(waiter, timeout=10)

    asyncio.run(main())
    assert order == ["loop free", "committed"]
