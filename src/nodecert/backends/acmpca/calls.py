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

from nodecert.backends.acmpca.parameters import RetryPolicy
from nodecert.backends.acmpca.polling import PollSchedule
from nodecert.core.errors import BackendUnavailableError
from nodecert.support.awsclients import (
    THROTTLING_CODES,
    botocore_errors,
    error_code,
    error_message,
    http_status,
    is_transient,
)
from nodecert.support.budget import deadline as request_deadline

__all__ = [
    "PCAError",
    "Pacing",
    "call_with_retries",
    "operation_deadline",
    "poll_certificate",
    "refused_outright",
]

_log = logging.getLogger("nodecert.backends.acmpca")
_T = TypeVar("_T")


class PCAError(Exception):
    """A non-transient botocore error with its code, raised from the original error.

    ``refused`` is True when PCA surely did nothing with the call: every attempt was
    refused outright (see :func:`refused_outright`).
    """

    def __init__(self, code: str, *, refused: bool = False) -> None:
        super().__init__(code)
        self.code = code
        self.refused = refused


def refused_outright(exc: BaseException) -> bool:
    """Whether the failed call surely did nothing at PCA: it never left, or PCA said no.

    A 4xx answer (``ThrottlingException``, ``ValidationException``, a malformed CSR) is a
    refusal; so is a connection that was never opened, and a request botocore would not
    send. A 5xx, a read timeout or a connection closed after the request went out leave
    the outcome unknown: PCA may have accepted it.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ProxyConnectionError,
    )

    never_sent = (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ProxyConnectionError,
    )
    if isinstance(exc, never_sent):
        return True
    status = http_status(exc)
    return isinstance(exc, ClientError) and status is not None and 400 <= status < 500


@dataclass(frozen=True, slots=True)
class Pacing:
    """The retry policy and the clock, sleep and jitter a backend was built with."""

    retry: RetryPolicy
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    jitter: Callable[[], float]


def operation_deadline(pacing: Pacing) -> float:
    """An operation's deadline: the policy's from now, or the request's budget if sooner."""
    own = pacing.monotonic() + pacing.retry.deadline
    budget = request_deadline()
    return own if budget is None else min(own, budget)


def call_with_retries(call: Callable[[], _T], pacing: Pacing, *, deadline: float) -> _T:
    """Run one PCA call, retrying transient errors with full jitter before ``deadline``.

    The errors say whether PCA surely did nothing with the call (``PCAError.refused``,
    ``BackendUnavailableError.nothing_issued``): true only when every attempt was refused
    outright or never sent, since one attempt that may have been accepted is enough for
    the call to have taken effect (retries carry the same idempotency token).

    Raises:
        PCAError: a non-transient error (from the botocore error).
        BackendUnavailableError: transient errors persisted or the deadline is near.
    """
    retry = pacing.retry
    attempt = 0
    refused = True  # So far, no attempt can have been accepted.
    while True:
        if pacing.monotonic() >= deadline:
            # The request's budget is spent (support.budget): not even one more call.
            raise BackendUnavailableError(
                "ca: no time left in this request for ACM PCA; try again later",
                retry_after=retry.retry_after,
                nothing_issued=refused,
            )
        try:
            return call()
        except botocore_errors() as exc:
            code = error_code(exc)
            refused = refused and refused_outright(exc)
            if not is_transient(exc):
                # "Not ready yet" is the normal answer while polling, not a problem.
                if code != "RequestInProgressException":
                    _log.warning("acm-pca: %s: %s", code, error_message(exc))
                raise PCAError(code, refused=refused) from exc
            attempt += 1
            ceiling = min(retry.max_delay, retry.base_delay * 2 ** (attempt - 1))
            delay = pacing.jitter() * ceiling
            if attempt >= retry.max_attempts or pacing.monotonic() + delay > deadline:
                _log.warning("acm-pca: giving up after %d attempts: %s", attempt, code)
                raise BackendUnavailableError(
                    f"ca: ACM PCA is unavailable or throttling ({code}); try again later",
                    retry_after=retry.retry_after,
                    nothing_issued=refused,
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
