"""Prometheus metrics for ``nodecert serve`` (``GET /metrics``), right with several workers.

Every metric of :data:`nodecert.core.metrics.METRICS` becomes ``nodecert_<name>`` (counters
get Prometheus's ``_total``). With several workers each process counts on its own, so the
service runs prometheus-client in its multiprocess mode: ``nodecert serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any worker starts
(:func:`prepare_multiprocess`), each worker writes its counts there, and ``/metrics``,
whichever worker answers, adds them all up. prometheus-client is imported lazily: the
Lambda functions and the CLI never load it.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nodecert.core.metrics import METRICS, MetricKind

__all__ = ["MULTIPROC_ENV", "PrometheusMetrics", "prepare_multiprocess"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("nodecert")


def prepare_multiprocess() -> Path:
    """Point this process (and the workers it starts) at a new, private counts directory.

    Must run before prometheus-client is imported: it picks its storage at import. The
    directory is removed when this process exits, so a restart starts from zero, as a
    restarted exporter's counts do.
    """
    directory = Path(tempfile.mkdtemp(prefix="nodecert-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    atexit.register(shutil.rmtree, directory, True)
    return directory


class PrometheusMetrics:
    """The :class:`~nodecert.core.metrics.Metrics` port on prometheus-client."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # A registry of its own: two services in one process (tests) never clash.
        self._registry = CollectorRegistry(auto_describe=True)
        self._multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._metrics: dict[str, Any] = {}
        # The child of each label set, as ``labels()`` returns it (the same object every
        # time): looked up in one dict instead of being checked and found again per call.
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        for spec in METRICS.values():
            kind = Counter if spec.kind is MetricKind.COUNTER else Histogram
            self._metrics[spec.name] = kind(
                f"nodecert_{spec.name}", spec.help, spec.labels, registry=self._registry
            )

    def count(self, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
        """Add to a counter; a failure is logged, never raised."""
        try:
            self._child(name, labels).inc(amount)
        except Exception:  # A metric must never fail the request it describes.
            log.warning("metrics: could not count %s", name, exc_info=True)

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        """Record a duration; a failure is logged, never raised."""
        try:
            self._child(name, labels).observe(seconds)
        except Exception:  # As in count().
            log.warning("metrics: could not observe %s", name, exc_info=True)

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        key = (name, tuple(labels.items()))
        child = self._children.get(key)
        if child is None:
            # Label values come from small fixed sets (core.metrics): the cache stays
            # small. A wrong label name raises here, as it did, and is never cached.
            child = self._metrics[name].labels(**labels)
            self._children[key] = child
        return child

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's counts, or every worker's."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        if not self._multiprocess:
            return bytes(generate_latest(self._registry))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
