"""The background drain of the CA revocation queue survives failures and stops cleanly."""

from __future__ import annotations

import threading
import time

import pytest

from nodecert.core.errors import StoreUnavailableError
from nodecert.server.drainer import RevocationDrainer


def test_a_failed_run_is_logged_and_the_next_run_still_comes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[object] = [StoreUnavailableError("store: down (test)"), 2, 0]
    done = threading.Event()

    def finish(**_: object) -> int:
        outcome = outcomes.pop(0) if outcomes else 0
        if not outcomes:
            done.set()
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, int)
        return outcome

    drainer = RevocationDrainer(finish, interval_s=0.01)
    drainer.start()
    assert done.wait(30)
    drainer.stop()
    assert drainer.runs >= 3
    assert "draining the CA queue failed" in caplog.text
    assert "2 CA revocation(s) still queued" in caplog.text


def test_run_once_reports_what_is_left_or_none() -> None:
    assert RevocationDrainer(lambda **_: 3).run_once() == 3

    def down(**_: object) -> int:
        raise StoreUnavailableError("store: down (test)")

    assert RevocationDrainer(down).run_once() is None
    with pytest.raises(ValueError, match="positive"):
        RevocationDrainer(lambda **_: 0, interval_s=0)


def test_stop_ends_the_thread_promptly() -> None:
    drainer = RevocationDrainer(lambda **_: 0, interval_s=3600)
    drainer.start()
    started = time.monotonic()
    drainer.stop()
    assert time.monotonic() - started < 10


def test_refused_revocations_are_skipped_until_a_run_does_nothing_new() -> None:
    queue = ["a", "b", "c", "d", "e"]
    refused = {"a", "b", "c"}
    seen: list[set[str]] = []

    def finish(*, failed: set[str]) -> int:
        seen.append(set(failed))
        for serial in [s for s in queue if s not in failed][:3]:
            if serial in refused:
                failed.add(serial)
            else:
                queue.remove(serial)
        return len(queue)

    drainer = RevocationDrainer(finish)
    assert drainer.run_once() == 5  # a, b, c refused.
    assert drainer.run_once() == 3  # d, e sent past them.
    assert drainer.run_once() == 3  # Nothing new: the next run retries a, b, c.
    refused.clear()
    assert drainer.run_once() == 0
    assert seen == [set(), {"a", "b", "c"}, {"a", "b", "c"}, set()]


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),  # An OSError nobody mapped.
        RuntimeError("a bug (test)"),
        StoreUnavailableError("store: down (test)"),
    ],
    ids=["oserror", "bug", "store"],
)
def test_any_failure_is_survived_and_logged_once_until_it_ends(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[object] = [error] * 5 + [1, 0]
    done = threading.Event()

    def finish(**_: object) -> int:
        outcome = outcomes.pop(0) if outcomes else 0
        if not outcomes:
            done.set()
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, int)
        return outcome

    drainer = RevocationDrainer(finish, interval_s=0.01)
    drainer.start()
    assert done.wait(30), "the drainer stopped running after a failure"
    drainer.stop()
    failures = [r for r in caplog.records if "draining the CA queue failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert (failures[0].exc_info is not None) is not isinstance(error, StoreUnavailableError)
    assert caplog.text.count("draining the CA queue works again") == 1


def test_a_lasting_backlog_is_logged_when_it_changes_not_on_every_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drainer = RevocationDrainer(lambda **_: 2)
    for _ in range(5):
        assert drainer.run_once() == 2
    assert caplog.text.count("still queued") == 1
