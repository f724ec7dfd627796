"""Workers in prometheus-client's multiprocess mode, as ``nodecert serve`` runs them: each
counts in memory, a scrape in one worker asks the others to flush first, a worker that ends
leaves every count in its file, and one killed keeps what it had flushed.

Each worker is a spawned process (prometheus-client picks its storage at import, from
``PROMETHEUS_MULTIPROC_DIR``) that takes commands from a queue; nothing waits on a clock
except :func:`test_counts_reach_the_file_every_interval_unasked`, which polls with a
deadline.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from nodecert.support.metrics import MULTIPROC_ENV, PrometheusMetrics

_CONTEXT = multiprocessing.get_context("spawn")
_NEVER = 3600.0  # A flush interval no test outlives: only an ask or the exit flushes.


def _serve(commands: Any, replies: Any, interval_s: float) -> None:
    metrics = PrometheusMetrics(flush_interval_s=interval_s)
    replies.put("ready")
    while (command := commands.get()) != "exit":
        if command == "scrape":
            replies.put(metrics.exposition().decode())
            continue
        for _ in range(int(command)):
            metrics.count("renewals", {"outcome": "renewed"})
            metrics.observe("issuance_seconds", {"route": "/generate-cert"}, 0.5)
        replies.put("counted")


class _Worker:
    def __init__(self, interval_s: float = _NEVER) -> None:
        self.commands, self.replies = _CONTEXT.Queue(), _CONTEXT.Queue()
        self.process = _CONTEXT.Process(
            target=_serve, args=(self.commands, self.replies, interval_s)
        )
        self.process.start()
        assert self.replies.get(timeout=60) == "ready"

    def ask(self, command: str) -> str:
        self.commands.put(command)
        return str(self.replies.get(timeout=60))

    def scrape(self) -> dict[str, float]:
        return _values(self.ask("scrape"))

    def end(self) -> None:
        self.commands.put("exit")
        self.process.join(60)
        assert self.process.exitcode == 0


def _values(text: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in {"nodecert_renewals_total", "nodecert_issuance_seconds_count"}:
                found[sample.name] = sample.value
            if sample.name == "nodecert_issuance_seconds_sum":
                found[sample.name] = sample.value
    return found


def _in_files(directory: Path) -> dict[str, float]:
    # The files as they stand, read without asking anyone to flush.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return _values(generate_latest(registry).decode())


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Short, as a socket path must be (pytest's tmp_path can be longer than 108 bytes).
    path = Path(tempfile.mkdtemp(prefix="nc-metrics-"))
    monkeypatch.setenv(MULTIPROC_ENV, str(path))  # Inherited by the spawned workers.
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _totals(n: int) -> dict[str, float]:
    return {
        "nodecert_renewals_total": float(n),
        "nodecert_issuance_seconds_count": float(n),
        "nodecert_issuance_seconds_sum": n * 0.5,
    }


def test_a_scrape_counts_what_every_worker_has_answered(directory: Path) -> None:
    counting, scraping = _Worker(), _Worker()
    try:
        assert counting.ask("3") == "counted"
        assert scraping.ask("2") == "counted"
        assert _in_files(directory) == _totals(0)  # All of it is still in memory.
        assert scraping.scrape() == _totals(5)
        assert counting.scrape() == _totals(5)
        assert counting.ask("4") == "counted"
        assert scraping.scrape() == _totals(9)
    finally:
        counting.end()
        scraping.end()


def test_a_worker_that_ends_leaves_its_counts_and_no_socket(directory: Path) -> None:
    ending, staying = _Worker(), _Worker()
    try:
        assert ending.ask("3") == "counted"
        ending.end()  # Never asked to flush: its exit did.
        assert sorted(p.name for p in directory.glob("*.sock")) == [
            f"flush-{staying.process.pid}.sock"
        ]
        assert _in_files(directory) == _totals(3)
        assert staying.scrape() == _totals(3)
    finally:
        staying.end()
    assert _in_files(directory) == _totals(3)


def test_a_killed_worker_keeps_what_it_flushed_and_is_skipped(directory: Path) -> None:
    killed, staying = _Worker(), _Worker()
    try:
        assert killed.ask("3") == "counted"
        assert staying.scrape() == _totals(3)  # Asked: flushed.
        killed.process.kill()
        killed.process.join(60)
        # Its socket is left behind and refuses the next scrape's ask at once.
        assert (directory / f"flush-{killed.process.pid}.sock").exists()
        assert staying.ask("1") == "counted"
        assert staying.scrape() == _totals(4)
    finally:
        staying.end()


def test_counts_reach_the_file_every_interval_unasked(directory: Path) -> None:
    worker = _Worker(interval_s=0.05)
    try:
        assert worker.ask("2") == "counted"
        deadline = time.monotonic() + 30
        while _in_files(directory) != _totals(2):
            assert time.monotonic() < deadline, "no flush within 30 s"
            time.sleep(0.01)
    finally:
        worker.end()
