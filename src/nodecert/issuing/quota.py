"""Quotas: a per-user issuance rate and a cap on active certificates per (user, node).

Both limits live in the store, so they hold across worker processes and Lambda
containers: the rate is a token bucket kept by a :class:`RateLimiter` (every store keeps
one), the cap counts the ledger's active rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from nodecert.core.errors import ConfigurationError, QuotaExceededError
from nodecert.core.ports import Ledger, RateLimiter
from nodecert.core.values import CertificateQuery, CertificateStatus, Profile

__all__ = ["QuotaPolicy"]


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """Issuance limits. ``0`` turns a limit off.

    Args:
        per_minute: Certificates a user may be issued per minute (token bucket refill).
        burst: Bucket capacity: how many may be issued at once after a quiet period.
        max_active: Active (unrevoked, unexpired, not superseded) certificates per
            (user, node).
        limiter: Where the buckets live; required when ``per_minute`` is set.
    """

    per_minute: int = 30
    burst: int = 30
    max_active: int = 10
    limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        if min(self.per_minute, self.burst, self.max_active) < 0:
            raise ConfigurationError("quota: limits must be >= 0")
        if self.per_minute and self.limiter is None:
            raise ConfigurationError("quota: a rate limit needs a store that keeps buckets")

    def check(
        self, user_id: str, node_id: str, ledger: Ledger, now: datetime, *, renewal: bool = False
    ) -> None:
        """Raise unless ``user_id`` may be issued one more certificate for ``node_id``.

        The active-certificate cap is checked first, so a refused request does not use up
        a token of the rate. A ``renewal`` skips the cap: its successor supersedes the
        certificate it renews in the same transaction, so the count of active ones stays
        the same (superseded certificates do not count).

        Raises:
            QuotaExceededError: with ``retry_after`` in seconds.
        """
        if self.max_active and not renewal:
            active = ledger.query(
                CertificateQuery(
                    user_id=user_id,
                    node_id=node_id,
                    status=CertificateStatus.ACTIVE,
                    now=now,
                    profile=Profile.CLIENT,  # A node's own certificates do not count.
                ),
            )
            if len(active) >= self.max_active:
                soonest = min(row.not_after for row in active)
                raise QuotaExceededError(
                    f"nodeId: {node_id!r} already has {len(active)} active certificates (limit"
                    f" {self.max_active}); revoke one or wait until one expires",
                    retry_after=max(1, math.ceil((soonest - now).total_seconds())),
                )
        if self.per_minute and self.limiter is not None:
            wait = self.limiter.take_token(
                f"issue:{user_id}",
                capacity=float(max(self.burst, 1)),
                refill_per_s=self.per_minute / 60.0,
                now=now,
            )
            if wait > 0:
                raise QuotaExceededError(
                    f"rate: more than {self.per_minute} certificates per minute for this user",
                    retry_after=max(1, math.ceil(wait)),
                )
