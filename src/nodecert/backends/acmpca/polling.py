"""When to ask ACM PCA whether a certificate is ready: a pure, adaptive schedule.

``IssueCertificate`` is asynchronous; ``GetCertificate`` answers
``RequestInProgressException`` until the certificate exists. The two calls have separate
account-wide quotas (https://docs.aws.amazon.com/general/latest/gr/pca.html: 25 and 75
requests per second by default), so an account issuing at its full IssueCertificate rate
can afford three polls per certificate on average. Polling from 50 ms and doubling spends
five or six polls on a certificate that takes a second, and is throttled.

The schedule therefore waits, before the first poll, about as long as certificates have
recently taken (measured, per backend instance, so per Lambda container; before the first
measurement, twice the round trip of the ``IssueCertificate`` call itself, up to
``first``); a certificate not ready then is close, so the next polls come after a quarter
of that, doubling, with jitter; a throttled poll waits four times as long instead of
retrying at once. Everything stays under the caller's deadline. Once learned, an issuance
costs one or two polls and is picked up within a fraction of its own duration.
"""

from __future__ import annotations

__all__ = ["PollSchedule"]


class PollSchedule:
    """The waits between ``GetCertificate`` polls, learning how long issuance takes.

    Args:
        first: The longest first wait before any measurement (seconds).
        floor: The shortest first wait the estimate may shrink to.
        ceiling: The longest wait between two polls after the first.
        longest_first: The longest first wait the estimate may grow to (a CA that takes
            three seconds is polled once after about three seconds, not every second).
    """

    def __init__(
        self,
        *,
        first: float = 0.3,
        floor: float = 0.05,
        ceiling: float = 1.0,
        longest_first: float = 5.0,
    ) -> None:
        if not 0 < floor <= first <= ceiling <= longest_first:
            raise ValueError("PollSchedule: need 0 < floor <= first <= ceiling <= longest_first")
        self.first = first
        self.floor = floor
        self.ceiling = ceiling
        self.longest_first = longest_first
        self._estimate: float | None = None

    @property
    def estimate(self) -> float | None:
        """How long certificates take to be ready, as measured (None before any issuance)."""
        return self._estimate

    def first_wait(self, round_trip: float) -> float:
        """The wait between ``IssueCertificate`` and the first ``GetCertificate``.

        Args:
            round_trip: How long the ``IssueCertificate`` call took: before anything was
                measured, the wait is twice that (a CA that answers fast signs fast),
                between ``floor`` and ``first``.
        """
        if self._estimate is not None:
            return self._estimate
        return min(self.first, max(self.floor, 2 * round_trip))

    def next_wait(self, attempt: int, jitter: float, *, throttled: bool = False) -> float:
        """The wait after the ``attempt``-th poll (from 1) found the certificate not ready.

        The first poll came when certificates are usually ready, so the certificate is
        likely close: the waits start at a quarter of the estimate (``floor`` before any
        measurement) and double, up to ``ceiling``. A certificate is thus picked up soon
        after it is ready without spending polls on the wait before.

        Args:
            attempt: How many polls found it not ready so far.
            jitter: A number in [0, 1): spreads polls of concurrent issuances apart.
            throttled: That poll was refused for the quota: wait four times as long.
        """
        base = self.floor if self._estimate is None else max(self.floor, self._estimate / 8)
        step = min(self.ceiling, base * 2.0 ** (attempt - 1) * (4 if throttled else 1))
        # "Equal jitter": between half and all of the step.
        return max(self.floor, step / 2 + step / 2 * jitter)

    def observe(self, elapsed: float, polls: int, *, last_wait: float = 0.0) -> None:
        """Learn from one issuance: ready at the ``polls``-th poll, ``elapsed`` seconds in.

        Args:
            elapsed: From ``IssueCertificate``'s answer to the poll that found it ready.
            polls: How many polls it took.
            last_wait: The wait before that poll: the certificate became ready during it.

        The first measurement starts the estimate. A certificate ready at the first poll
        may have been ready earlier: the estimate shrinks by a tenth, so it follows a
        faster CA down. One that needed more polls was ready somewhere in the last wait:
        the estimate moves halfway towards the middle of it.
        """
        ready = elapsed if polls <= 1 else elapsed - last_wait / 2
        previous = ready if self._estimate is None else self._estimate
        target = previous * 0.9 if polls <= 1 else (previous + ready) / 2
        self._estimate = min(self.longest_first, max(self.floor, target))
