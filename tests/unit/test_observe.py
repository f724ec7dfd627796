"""The HTTP observer's issuance label (from the use case's note, else from the body); the sink."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.concurrency import run_in_threadpool

from nodecert.core.context import note_issuance, open_issuance_note
from nodecert.http.observe import ObservedApp
from nodecert.support.metrics import PrometheusMetrics


class Recorded:
    """A Metrics sink that keeps what it was given."""

    def __init__(self) -> None:
        self.counts: list[tuple[str, dict[str, str]]] = []

    def count(self, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
        self.counts.append((name, labels))

    def observe(self, name: str, labels: dict[str, str], seconds: float) -> None:
        pass


def _app(status: int, work: Callable[[], Awaitable[None]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await work()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _issuance_label(status: int, body: bytes, work: Callable[[], Awaitable[None]]) -> str:
    metrics = Recorded()
    observed = ObservedApp(
        _app(status, work), metrics, ca="local", direct=[("POST", "/generate-cert")]
    )
    scope = {"type": "http", "method": "POST", "path": "/generate-cert", "client": None}
    chunks = [
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(observed(scope, receive, send))
    (labels,) = [labels for name, labels in metrics.counts if name == "issuances"]
    return labels["key_type"]


async def _nothing() -> None:
    pass


def test_without_a_note_the_body_gives_the_label() -> None:
    body = json.dumps({"nodeId": "n1", "keyType": "ec-p256"}).encode()
    assert _issuance_label(401, body, _nothing) == "ec-p256"
    assert _issuance_label(400, b"not json at all", _nothing) == "unknown"


def test_a_noted_key_is_the_label_and_the_body_is_not_parsed_again() -> None:
    async def notes() -> None:
        note_issuance("csr")

    # A body that would read as "unknown": the note, not the body, made the label.
    assert _issuance_label(201, b"not json at all", notes) == "csr"


def test_a_note_made_in_a_worker_thread_is_seen() -> None:
    # Issuance that may wait runs in the thread pool, in a copy of the request's context.
    async def notes_in_a_thread() -> None:
        await run_in_threadpool(note_issuance, "rsa-2048")

    assert _issuance_label(201, b"not json at all", notes_in_a_thread) == "rsa-2048"


def test_each_request_has_a_note_of_its_own() -> None:
    outer = open_issuance_note()
    note_issuance("csr")
    body = json.dumps({"nodeId": "n1", "keyType": "ec-p256"}).encode()
    assert _issuance_label(403, body, _nothing) == "ec-p256"
    assert outer.key == "csr"


def test_prometheus_children_are_reused_and_a_wrong_label_still_only_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = PrometheusMetrics()
    metrics.count("renewals", {"outcome": "renewed"})
    metrics.count("renewals", {"outcome": "renewed"}, 2.0)
    assert b'nodecert_renewals_total{outcome="renewed"} 3.0' in metrics.exposition()
    with caplog.at_level(logging.WARNING, logger="nodecert"):
        metrics.count("renewals", {"result": "renewed"})  # Not the metric's label.
        metrics.count("renewals", {"result": "renewed"})  # Refused again, not cached.
    assert [r.getMessage() for r in caplog.records] == ["metrics: could not count renewals"] * 2


def test_prometheus_labels_in_another_order_count_in_the_same_series() -> None:
    # A series is looked up by its label names and values as given; the same labels in
    # another order are another lookup, never another series (nor a value under the wrong
    # name).
    metrics = PrometheusMetrics()
    metrics.count("authorize_decisions", {"decision": "deny", "reason": "revoked"})
    metrics.count("authorize_decisions", {"reason": "revoked", "decision": "deny"})
    metrics.count("authorize_decisions", {"reason": "deny", "decision": "revoked"})
    text = metrics.exposition()
    assert b'nodecert_authorize_decisions_total{decision="deny",reason="revoked"} 2.0' in text
    assert b'nodecert_authorize_decisions_total{decision="revoked",reason="deny"} 1.0' in text
