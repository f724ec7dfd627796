"""What nodecert counts and times: one table of metrics, the port that records them.

The table is the single declaration: the Prometheus exposition of ``nodecert serve``
(``GET /metrics``) and the CloudWatch embedded metrics the Lambda functions print both
iterate it, so a metric has one name, one help text and one set of labels everywhere.
Use cases and adapters record through :class:`Metrics`; :data:`NO_METRICS` records nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = ["METRICS", "NO_METRICS", "MetricKind", "MetricSpec", "Metrics", "NullMetrics"]


class MetricKind(enum.StrEnum):
    """How a metric adds up: a counter counts events, a histogram times them (seconds)."""

    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its name (without the ``nodecert_`` prefix), kind, help and labels."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "issuances",
            MetricKind.COUNTER,
            "Certificates issued (outcome=issued) or refused (outcome=<problem code>)",
            ("route", "key_type", "ca", "outcome"),
        ),
        MetricSpec(
            "issuance_seconds",
            MetricKind.HISTOGRAM,
            "Time to answer an issuance request, from the parsed request to the reply",
            ("route",),
        ),
        MetricSpec(
            "ca_call_seconds",
            MetricKind.HISTOGRAM,
            "Time the CA backend took to sign one certificate",
            ("ca",),
        ),
        MetricSpec(
            "ca_errors",
            MetricKind.COUNTER,
            "CA backend calls that failed, by the error's stable code",
            ("ca", "code"),
        ),
        MetricSpec(
            "ledger_commit_seconds",
            MetricKind.HISTOGRAM,
            "Time to make one issued certificate's ledger row durable",
            ("store",),
        ),
        MetricSpec(
            "quota_refusals",
            MetricKind.COUNTER,
            "Issuances refused by a quota (rate or active certificates per node)",
            ("route",),
        ),
        MetricSpec(
            "authorize_decisions",
            MetricKind.COUNTER,
            "Node-side access decisions, by decision and reason",
            ("decision", "reason"),
        ),
        MetricSpec(
            "renewals",
            MetricKind.COUNTER,
            "Proof-of-possession renewals, by outcome (renewed or the problem code)",
            ("outcome",),
        ),
        MetricSpec(
            "revocations",
            MetricKind.COUNTER,
            "Certificates revoked, by reason",
            ("reason",),
        ),
        MetricSpec(
            "http_requests",
            MetricKind.COUNTER,
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
        ),
    )
}


class Metrics(Protocol):
    """Where counts and timings go (Prometheus, CloudWatch embedded metrics, nowhere).

    Names are keys of :data:`METRICS`; labels are exactly the spec's labels. Recording
    never raises: a metrics failure must not fail the request it describes.
    """

    def count(self, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
        """Add ``amount`` to the counter ``name`` with ``labels``."""
        ...

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        """Record one duration in the histogram ``name`` with ``labels``."""
        ...


class NullMetrics:
    """Records nothing (tests, the CLI, a service with metrics off)."""

    def count(self, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
        """Discard the count."""

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        """Discard the timing."""


NO_METRICS: Metrics = NullMetrics()
