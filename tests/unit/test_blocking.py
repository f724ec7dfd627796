"""support.blocking: the event-loop flag and the callbacks held back until the loop yields."""

from __future__ import annotations

import asyncio

from nodecert.support.blocking import must_not_wait, never_wait, when_loop_yields


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
