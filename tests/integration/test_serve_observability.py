"""``nodecert serve`` with two workers: ``/metrics`` adds up every worker's counts, and with
``NODECERT_LOG_FORMAT=json`` every line it writes (nodecert's, uvicorn's) is one JSON object
that names the request it belongs to, the same id the client got in ``X-Request-Id`` and
the ledger row keeps. No token or private key reaches a line."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.processes import cli, free_port, nodecert_env, start_server, stop_server


def _post(port: int, token: str) -> tuple[int, dict[str, str], dict[str, object]]:
    # A new connection each time, so the kernel spreads them over the workers.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"nodeId": "n1", "keyType": "ec-p256"})
        connection.request("POST", "/generate-cert", body, {"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def _issued(port: int) -> tuple[float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    total = timed = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nodecert_issuances_total" and sample.labels["outcome"] == "issued":
                total += sample.value
            if sample.name == "nodecert_ca_call_seconds_count":
                timed += sample.value
    return total, timed


def test_metrics_add_up_across_workers_and_every_line_is_json(tmp_path: Path) -> None:
    port = free_port()
    env = nodecert_env(tmp_path / "home", port, workers="2", log_format="json", key_pool_size="0")
    log = tmp_path / "serve.log"
    server = start_server(env, log)
    try:
        cli(env, "nodes", "add", "n1", "--owner", "alice")
        token = cli(env, "dev-token", "alice")
        replies = [_post(port, token) for _ in range(6)]
        assert [status for status, _, _ in replies] == [201] * 6
        # Whichever worker answers the scrape, it counts all six (each worker counts in
        # memory; the one answering asks the other to flush first), and times all six.
        assert [_issued(port) for _ in range(4)] == [(6.0, 6.0)] * 4
    finally:
        stop_server(server)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in lines)
    text = log.read_text()
    assert token not in text
    assert "PRIVATE KEY" not in text
    loggers = {entry["logger"] for entry in lines}
    assert {"nodecert", "uvicorn.access", "uvicorn.error"} <= loggers
    for _, headers, body in replies:
        request_id = {k.lower(): v for k, v in headers.items()}["x-request-id"]
        mine = [entry for entry in lines if entry.get("request_id") == request_id]
        # The issuance line and uvicorn's access line, both naming this request.
        assert {entry["logger"] for entry in mine} == {"nodecert", "uvicorn.access"}
        issued = next(e for e in mine if e["logger"] == "nodecert")
        assert f"serial={body['serialNumber']}" in issued["message"]
        assert f"request_id={request_id}" in issued["message"]
