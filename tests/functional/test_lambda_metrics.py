"""The Lambda functions' CloudWatch embedded metrics and request ids (recorded events).

The same counts as ``nodecert serve``'s ``/metrics`` (one table, :data:`METRICS`), printed
as embedded-metric-format lines that CloudWatch turns into metrics.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from nodecert.aws import authorizer
from nodecert.aws.handler import LambdaApp
from nodecert.aws.metrics import EmbeddedMetrics
from nodecert.bootstrap import build_service
from nodecert.core.metrics import METRICS
from tests.kit import RECORDED_CLIENT_ID, api_event, event, issue

from ..conftest import make_settings


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _metric(line: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    directive = line["_aws"]["CloudWatchMetrics"][0]
    name = directive["Metrics"][0]["Name"]
    dimensions = {key: line[key] for key in directive["Dimensions"][0]}
    return name, dimensions


def test_the_api_function_prints_embedded_metrics_per_invocation(tmp_path: Path) -> None:
    stream = io.StringIO()
    metrics = EmbeddedMetrics(stream=stream, clock=lambda: 1_700_000_000.0)
    service = build_service(make_settings(tmp_path / "home"), metrics=metrics)
    app = LambdaApp.for_service(service)
    app.client_ids = frozenset({RECORDED_CLIENT_ID})  # As the app fixture does.
    assert app.handle(api_event("rest_put_node_admin.json"))["statusCode"] == 200
    stream.truncate(0)
    stream.seek(0)

    issued = app.handle(api_event("rest_generate_cert.json"))

    assert issued["statusCode"] == 201, issued["body"]
    # API Gateway's request id names the reply and the log lines.
    assert issued["headers"]["X-Request-Id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    lines = _lines(stream)
    assert all(line["_aws"]["Timestamp"] == 1_700_000_000_000 for line in lines)
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "nodecert" for line in lines)
    found = {_metric(line)[0]: (line, _metric(line)[1]) for line in lines}
    line, dimensions = found["issuances_total"]
    assert dimensions == {
        "ca": "local",
        "key_type": "ec-p256",
        "outcome": "issued",
        "route": "/generate-cert",
    }
    assert line["issuances_total"] == 1.0
    assert found["ca_call_seconds"][0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0] == {
        "Name": "ca_call_seconds",
        "Unit": "Seconds",
    }
    assert len(found["issuance_seconds"][0]["issuance_seconds"]) == 1
    requests = found["http_requests_total"][1]
    assert requests == {"method": "POST", "route": "/generate-cert", "status": "201"}

    # Flushed: the next invocation starts from nothing.
    stream.truncate(0)
    stream.seek(0)
    app.handle(api_event("rest_ca.json"))
    assert [_metric(line)[0] for line in _lines(stream)] == ["http_requests_total"]
    service.close()


def test_every_name_printed_is_in_the_table(app) -> None:
    stream = io.StringIO()
    app.metrics = EmbeddedMetrics(stream=stream)
    app.handle({"nonsense": True})
    names = {_metric(line)[0].removesuffix("_total") for line in _lines(stream)}
    assert names
    assert names <= set(METRICS)


def test_the_authorizer_counts_its_decisions(env) -> None:
    cert = issue(env.service.authority, "alice", "n1", admin=env.service.administration)
    stream = io.StringIO()
    metrics = EmbeddedMetrics(stream=stream)
    target = authorizer.TargetSource("path:nodeId")
    decider = env.service.decider
    authorizer.handle(event("authorizer_rest_request.json", pem=cert.pem), decider, target, metrics)
    authorizer.handle(
        event("authorizer_rest_request.json", pem=cert.pem, node="n2"), decider, target, metrics
    )
    metrics.flush()
    counted = {tuple(sorted(_metric(line)[1].items())) for line in _lines(stream)}
    assert counted == {
        (("decision", "allow"), ("reason", "ok")),
        (("decision", "deny"), ("reason", "wrong_node")),
    }


def test_the_lambda_functions_import_no_web_framework() -> None:
    code = (
        "import sys, nodecert.aws.handler, nodecert.aws.authorizer, nodecert.aws.metrics;"
        "print(sorted(m for m in ('starlette', 'fastapi', 'prometheus_client', 'uvicorn')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
