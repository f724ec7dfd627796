"""Calling ACM PCA under a deadline: retries with full jitter, and polling for a certificate.

``ThrottlingException``, 5xx and connection errors are retried a few times with full
jitter; every other error is logged and raised at once as :class:`PCAError`, for the
backend to translate. Time comes from a :class:`Pacing` so that tests neither sleep nor
depend on chance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nodecert.awsclients import (
    THROTTLING_CODES,
    botocore_errors,
    error_code,
    error_message,
    is_transient,
)
from nodecert.backends.pca_polling import PollSchedule
from nodecert.backends.pca_shapes import RetryPolicy
from nodecert.core.errors import BackendUnavailableError

__all__ = ["PCAError", "Pacing", "call_with_retries", "poll_certificate"]

_log = logging.getLogger("nodecert.backends.acmpca")
_T = TypeVar("_T")


class PCAError(Exception):
    """A non-transient botocore error with its code, raised from the original error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Pacing:
    """The retry policy and the clock, sleep and jitter a backend was built with."""

    retry: RetryPolicy
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    jitter: Callable[[], float]


def call_with_retries(call: Callable[[], _T], pacing: Pacing, *, deadline: float) -> _T:
    """Run one PCA call, retrying transient errors with full jitter before ``deadline``.

    Raises:
        PCAError: a non-transient error (from the botocore error).
        BackendUnavailableError: transient errors persisted or the deadline is near.
    """
    retry = pacing.retry
    attempt = 0
    while True:
        if pacing.monotonic() >= deadline:
            # The request's budget is spent (core.budget): not even one more call.
            raise BackendUnavailableError(
                "ca: no time left in this request for ACM PCA; try again later",
                retry_after=retry.retry_after,
            )
        try:
            return call()
        except botocore_errors() as exc:
            code = error_code(exc)
            if not is_transient(exc):
                # "Not ready yet" is the normal answer while polling, not a problem.
                if code != "RequestInProgressException":
                    _log.warning("acm-pca: %s: %s", code, error_message(exc))
                raise PCAError(code) from exc
            attempt += 1
            ceiling = min(retry.max_delay, retry.base_delay * 2 ** (attempt - 1))
            delay = pacing.jitter() * ceiling
            if attempt >= retry.max_attempts or pacing.monotonic() + delay > deadline:
                _log.warning("acm-pca: giving up after %d attempts: %s", attempt, code)
                raise BackendUnavailableError(
                    f"ca: ACM PCA is unavailable or throttling ({code}); try again later",
                    retry_after=retry.retry_after,
                ) from exc
            pacing.sleep(delay)


def poll_certificate(
    get_certificate: Callable[[], dict[str, Any]],
    pacing: Pacing,
    *,
    schedule: PollSchedule,
    deadline: float,
    round_trip: float,
) -> dict[str, Any]:
    """``GetCertificate`` until ready, on the adaptive schedule, before ``deadline``.

    A throttled poll (or a 5xx) is not an error here: the wait grows and polling goes on
    while the deadline allows.

    Raises:
        PCAError: a non-transient error other than "not ready yet".
        BackendUnavailableError: the certificate was not ready before ``deadline``.
    """
    started = pacing.monotonic()
    delay = schedule.first_wait(round_trip)
    polls = 0
    while True:
        if pacing.monotonic() + delay > deadline:
            raise BackendUnavailableError(
                f"ca: ACM PCA did not finish issuing within {pacing.retry.deadline:g} s",
                retry_after=pacing.retry.retry_after,
            )
        pacing.sleep(delay)
        polls += 1
        try:
            response = get_certificate()
        except botocore_errors() as exc:
            code = error_code(exc)
            throttled = code in THROTTLING_CODES
            if code != "RequestInProgressException" and not is_transient(exc):
                _log.warning("acm-pca: %s: %s", code, error_message(exc))
                raise PCAError(code) from exc
            delay = schedule.next_wait(polls, pacing.jitter(), throttled=throttled)
            continue
        schedule.observe(pacing.monotonic() - started, polls, last_wait=delay)
        return response
