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
import threading
from bisect import bisect_left
from pathlib import Path
from typing import Any

from nodecert.core.metrics import METRICS, MetricKind
from nodecert.support.metrics_flusher import Flusher, ask_to_flush

__all__ = ["FLUSH_INTERVAL_S", "MULTIPROC_ENV", "PrometheusMetrics", "prepare_multiprocess"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The longest a worker's counts wait in its memory before they reach its file (a scrape
# asks for them at once; a worker killed with SIGKILL loses at most this much).
FLUSH_INTERVAL_S = 1.0
# A series' key: the metric's name, its label names, then their values (a flat tuple of
# strings, whose hashes Python keeps: cheaper to make and to look up than nested pairs).
_Key = tuple[str, ...]
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
    """The :class:`~nodecert.core.metrics.Metrics` port on prometheus-client.

    Counts and timings add up in plain memory (a float per counter, a sum and a count per
    bucket per histogram, under one lock) and reach prometheus-client's values only when
    flushed: before every exposition, and with several workers (multiprocess mode) also
    every ``flush_interval_s`` on a thread of their own, whenever another worker's scrape
    asks (:mod:`nodecert.support.metrics_flusher`), and at exit. ``GET /metrics`` therefore
    reports every request answered before it, as when each count was written at once;
    recording costs about a third of that (an mmap write under prometheus-client's lock
    per value, two per histogram observation). A worker killed with SIGKILL loses at most
    the last ``flush_interval_s`` of its counts; one that ends otherwise loses none.
    """

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, *, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # A registry of its own: two services in one process (tests) never clash.
        self._registry = CollectorRegistry(auto_describe=True)
        directory = os.environ.get(MULTIPROC_ENV)
        self._metrics: dict[str, Any] = {}
        for spec in METRICS.values():
            kind = Counter if spec.kind is MetricKind.COUNTER else Histogram
            self._metrics[spec.name] = kind(
                f"nodecert_{spec.name}", spec.help, spec.labels, registry=self._registry
            )
        # Histogram.observe's bucket is the first bound at or above the value.
        self._bounds: tuple[float, ...] = tuple(Histogram.DEFAULT_BUCKETS)
        # Pending values by (name, label items), and the prometheus child each goes to:
        # a counter's [amount]; a histogram's [sum, count per bucket..., NaN observations].
        self._counts: dict[_Key, list[float]] = {}
        self._timings: dict[_Key, list[float]] = {}
        self._children: dict[_Key, Any] = {}
        self._lock = threading.Lock()  # The pending values.
        self._flushing = threading.Lock()  # One flush at a time, written whole.
        self._directory = Path(directory) if directory else None
        self._flusher: Flusher | None = None
        if self._directory is not None:
            self._flusher = Flusher(self.flush, self._directory, flush_interval_s)
            atexit.register(self.close)

    def count(self, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
        """Add to a counter; a failure is logged, never raised."""
        try:
            if amount < 0:
                raise ValueError(f"counters only go up, not by {amount!r}")
            key = (name, *labels, *labels.values())
            values = self._counts.get(key) or self._pending(key, labels, MetricKind.COUNTER)
            lock = self._lock  # acquire/release: cheaper than a with block, on every request.
            lock.acquire()
            try:
                values[0] += amount
            finally:
                lock.release()
        except Exception:  # A metric must never fail the request it describes.
            log.warning("metrics: could not count %s", name, exc_info=True)

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        """Record a duration; a failure is logged, never raised."""
        try:
            key = (name, *labels, *labels.values())
            values = self._timings.get(key) or self._pending(key, labels, MetricKind.HISTOGRAM)
            # NaN falls in no bucket (as in Histogram.observe): the last, unwritten, slot.
            bucket = bisect_left(self._bounds, seconds) + 1 if seconds == seconds else -1
            lock = self._lock
            lock.acquire()
            try:
                values[0] += seconds
                values[bucket] += 1
            finally:
                lock.release()
        except Exception:  # As in count().
            log.warning("metrics: could not observe %s", name, exc_info=True)

    def _pending(self, key: _Key, labels: dict[str, str], kind: MetricKind) -> list[float]:
        name = key[0]
        if METRICS[name].kind is not kind:
            raise TypeError(f"metrics: {name} is a {METRICS[name].kind}, not a {kind}")
        # Label values come from small fixed sets (core.metrics): these stay small. A
        # wrong label name raises here, as prometheus-client's labels() does, uncached.
        child = self._metrics[name].labels(**labels)
        table = self._counts if kind is MetricKind.COUNTER else self._timings
        size = 1 if kind is MetricKind.COUNTER else len(self._bounds) + 2
        with self._lock:
            self._children[key] = child
            return table.setdefault(key, [0.0] * size)

    def flush(self) -> None:
        """Write the pending counts to prometheus-client (its file, with several workers).

        A failure is logged: those counts are lost, the next ones are not.
        """
        with self._flushing:
            with self._lock:
                counts = _take(self._counts)
                timings = _take(self._timings)
            try:
                for key, (amount,) in counts:
                    self._children[key].inc(amount)
                for key, values in timings:
                    # prometheus-client has no call to add many observations at once; a
                    # histogram child keeps its sum and its (not cumulative) bucket counts
                    # as values (tests/unit/test_metrics_batching.py holds this to
                    # Histogram.observe's own exposition).
                    child = self._children[key]
                    child._sum.inc(values[0])
                    for bucket, number in zip(child._buckets, values[1:-1], strict=True):
                        if number:
                            bucket.inc(number)
            except Exception:
                log.warning("metrics: could not write the counts", exc_info=True)

    def close(self) -> None:
        """Flush, and with several workers stop the flushing thread (at exit)."""
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        else:
            self.flush()

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's counts, or every worker's."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        self.flush()
        if self._directory is None:
            return bytes(generate_latest(self._registry))
        own = self._flusher.path if self._flusher is not None else None
        ask_to_flush(self._directory, own=own)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))


def _take(table: dict[_Key, list[float]]) -> list[tuple[_Key, list[float]]]:
    # The values recorded since the last flush, each slot set back to zero in place (the
    # recording side holds on to the lists). Call with the lock held.
    taken = []
    for key, values in table.items():
        if any(values):
            taken.append((key, values[:]))
            values[:] = [0.0] * len(values)
    return taken
