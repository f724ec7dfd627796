"""CloudWatch embedded metrics: the Lambda functions' counts, as ``GET /metrics`` has them.

A Lambda function has no port to scrape; CloudWatch reads metrics out of its log instead,
from lines in the embedded metric format (EMF, "Specification: Embedded metric format" in
the CloudWatch documentation). :class:`EmbeddedMetrics` gathers what one invocation
records (the names and labels of :data:`nodecert.core.metrics.METRICS`, labels as
dimensions) and :meth:`EmbeddedMetrics.flush` prints one EMF line per metric and label set
at the end of the invocation: no API call, no extra latency, nothing to configure.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from nodecert.core.metrics import METRICS, MetricKind

__all__ = ["NAMESPACE", "EmbeddedMetrics"]

NAMESPACE = "nodecert"


class EmbeddedMetrics:
    """The :class:`~nodecert.core.metrics.Metrics` port, printed as CloudWatch EMF lines.

    Args:
        namespace: The CloudWatch namespace.
        stream: Where the lines go (the function's standard output, which Lambda logs).
        clock: Milliseconds since the epoch, for the lines' timestamps.
    """

    def __init__(
        self,
        namespace: str = NAMESPACE,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._timings: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}

    def count(self, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
        """Add to a counter until the next :meth:`flush`."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        """Keep a duration until the next :meth:`flush`."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._timings.setdefault(key, []).append(seconds)

    def flush(self) -> None:
        """Print what was recorded since the last flush, one EMF line per series."""
        with self._lock:
            counts, self._counts = self._counts, {}
            timings, self._timings = self._timings, {}
        stream = self._stream or sys.stdout
        timestamp = int(self._clock() * 1000)
        for (name, labels), value in counts.items():
            stream.write(self._line(name, labels, value, "Count", timestamp) + "\n")
        for (name, labels), values in timings.items():
            stream.write(self._line(name, labels, values, "Seconds", timestamp) + "\n")
        stream.flush()

    def _line(
        self,
        name: str,
        labels: tuple[tuple[str, str], ...],
        value: float | list[float],
        unit: str,
        timestamp: int,
    ) -> str:
        spec = METRICS[name]
        metric = f"{name}_total" if spec.kind is MetricKind.COUNTER else name
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [[key for key, _ in labels]],
                        "Metrics": [{"Name": metric, "Unit": unit}],
                    }
                ],
            },
            **dict(labels),
            metric: value,
        }
        return json.dumps(document, separators=(",", ":"))
