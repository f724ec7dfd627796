"""support.blocking: the event-loop flag and the callbacks held back until the loop yields."""

from __future__ import annotations

import asyncio

from nodecert.support.blocking import (
    count_requests_in,
    must_not_wait,
    never_wait,
    when_loop_yields,
)


def test_nothing_is_scheduled_off_the_flag_or_without_a_running_loop() -> None:
    ran: list[str] = []
    assert when_loop_yields(lambda: ran.append("no flag")) is False
    with never_wait():
        assert must_not_wait()
        assert when_loop_yields(lambda: ran.append("no loop")) is False

    async def on_the_loop_without_the_flag() -> bool:
        return when_loop_yields(lambda: ran.append("no flag on the loop"))

    assert asyncio.run(on_the_loop_without_the_flag()) is False
    assert ran == []  # The caller runs it itself when told False.


def test_a_callback_runs_after_the_callbacks_that_were_ready_before_it() -> None:
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, "ready before")
        with never_wait():
            assert when_loop_yields(lambda: order.append("held back"))
        order.append("still running")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert order == ["still running", "ready before", "held back"]


def test_with_a_lone_request_nothing_is_held_back_and_with_two_it_is() -> None:
    # A server registers its live requests: the one running now alone has nobody to share
    # a held-back commit with, so the caller runs the callback itself (no loop round trip).
    requests: set[str] = {"this one"}
    count_requests_in(requests)
    ran: list[str] = []

    async def main() -> tuple[bool, bool]:
        with never_wait():
            alone = when_loop_yields(lambda: ran.append("alone"))
            requests.add("another")
            together = when_loop_yields(lambda: ran.append("together"))
        await asyncio.sleep(0)
        return alone, together

    try:
        assert asyncio.run(main()) == (False, True)
    finally:
        count_requests_in(None)
    assert ran == ["together"]
