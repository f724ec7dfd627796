"""PrometheusMetrics counts in memory and writes prometheus-client's values when flushed:
the exposition is the one prometheus-client gives for the same calls, nothing is lost
between threads, and what the table does not allow is logged, never counted."""

from __future__ import annotations

import logging
import math
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from nodecert.core.metrics import METRICS
from nodecert.support.metrics import PrometheusMetrics
from nodecert.support.metrics_flusher import Flusher

_LABELS = {"route": "/generate-cert"}


def _lines(exposition: bytes) -> list[str]:
    # Without the _created samples: a timestamp of when each child was made.
    return [
        line
        for line in exposition.decode().splitlines()
        if line.startswith("nodecert_issuance_seconds") or line.startswith("nodecert_renewals")
        if "_created" not in line
    ]


def test_a_flushed_histogram_is_what_observe_would_have_written() -> None:
    # Every bucket bound, values between and beyond them, zero, infinity and NaN: each in
    # the bucket Histogram.observe puts it in, the sum the same (same order of additions).
    bounds = [b for b in Histogram.DEFAULT_BUCKETS if b != math.inf]
    seconds = [0.0, *bounds, *(b * 1.0001 for b in bounds), 0.0001, 99.0, math.inf, math.nan]
    direct = CollectorRegistry()
    histogram = Histogram(
        "nodecert_issuance_seconds", METRICS["issuance_seconds"].help, ["route"],
        registry=direct,
    )  # fmt: skip
    counter = Counter("nodecert_renewals", METRICS["renewals"].help, ["outcome"], registry=direct)
    batched = PrometheusMetrics()
    for value in seconds[:10]:
        histogram.labels(**_LABELS).observe(value)
        batched.observe("issuance_seconds", _LABELS, value)
    batched.flush()  # Two flushes: the second adds to what the first wrote.
    for value in seconds[10:]:
        histogram.labels(**_LABELS).observe(value)
        batched.observe("issuance_seconds", _LABELS, value)
    for amount in (1.0, 2.5, 0.0):
        counter.labels(outcome="renewed").inc(amount)
        batched.count("renewals", {"outcome": "renewed"}, amount)
    expected = _lines(generate_latest(direct))
    assert len(expected) == len(Histogram.DEFAULT_BUCKETS) + 3  # Buckets, count, sum, total.
    # NaN made the sum NaN in both; the text says so.
    assert 'nodecert_issuance_seconds_sum{route="/generate-cert"} NaN' in expected
    assert _lines(batched.exposition()) == expected


def test_no_count_is_lost_between_threads_and_flushes() -> None:
    # Threads switch every few bytecodes instead of every 5 ms: a read-add-write that is
    # not under the lock, or a slot cleared after an unlocked read, loses counts here.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _record_from_threads()
    finally:
        sys.setswitchinterval(previous)


def _record_from_threads() -> None:
    metrics = PrometheusMetrics()
    threads, each = 8, 3000
    start = threading.Barrier(threads + 1)
    done = threading.Event()

    def record() -> None:
        start.wait()
        for _ in range(each):
            metrics.count("renewals", {"outcome": "renewed"})
            metrics.observe("issuance_seconds", _LABELS, 0.5)

    def flush() -> None:
        start.wait()
        while not done.is_set():
            metrics.flush()

    workers = [threading.Thread(target=record) for _ in range(threads)]
    flusher = threading.Thread(target=flush)
    for thread in [*workers, flusher]:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    flusher.join()
    text = metrics.exposition().decode()
    total = threads * each
    assert f'nodecert_renewals_total{{outcome="renewed"}} {float(total)}' in text
    assert f'nodecert_issuance_seconds_count{{route="/generate-cert"}} {float(total)}' in text
    assert f'nodecert_issuance_seconds_sum{{route="/generate-cert"}} {total * 0.5}' in text
    bucket = 'nodecert_issuance_seconds_bucket{le="0.5",route="/generate-cert"}'
    assert f"{bucket} {float(total)}" in text


def test_what_the_table_does_not_allow_is_logged_and_never_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = PrometheusMetrics()
    with caplog.at_level(logging.WARNING, logger="nodecert"):
        metrics.count("issuance_seconds", _LABELS)  # A histogram.
        metrics.observe("renewals", {"outcome": "renewed"}, 1.0)  # A counter.
        metrics.count("renewals", {"outcome": "renewed"}, -1.0)  # Counters only go up.
        metrics.count("no_such_metric", {})
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: could not count issuance_seconds",
        "metrics: could not observe renewals",
        "metrics: could not count renewals",
        "metrics: could not count no_such_metric",
    ]
    text = metrics.exposition().decode()
    assert "nodecert_issuance_seconds_count" not in text
    assert "nodecert_renewals_total{" not in text


def test_a_flush_interval_must_be_positive() -> None:
    for interval in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="flush interval must be positive"):
            Flusher(lambda: None, Path("never-made"), interval)
