"""``GET /metrics``: what issuance, refusals, renewals, decisions and revocations add up to.

The service runs in-process with :class:`PrometheusMetrics`; every count is read back from
the exposition a Prometheus server would scrape (parsed with prometheus-client's own parser).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nodecert.bootstrap import build_service
from nodecert.core.metrics import METRICS, MetricKind
from nodecert.http.app import create_app
from nodecert.issuing.renewal import mint_renewal_token, renewal_audience
from nodecert.support.metrics import PrometheusMetrics

from ..conftest import Env, make_settings

_SECRET = "s" * 24


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    metrics = PrometheusMetrics()
    service = build_service(
        make_settings(
            tmp_path / "home", quota_per_minute=4, quota_burst=4, authorize_secret=_SECRET
        ),
        metrics=metrics,
        metrics_exposition=metrics.exposition,
    )
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Env(service, client)
    service.close()


def _samples(env: Env) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = env.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _renew(env: Env, issued: dict[str, Any]) -> int:
    certificate = x509.load_pem_x509_certificate(str(issued["certificate"]).encode())
    key = serialization.load_pem_private_key(str(issued["privateKey"]).encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    audience = renewal_audience(env.service.settings.trust_domain)
    token = mint_renewal_token(certificate, key, audience=audience)
    return env.client.post("/v1/renew", headers={"Authorization": f"Bearer {token}"}).status_code


def _authorize(env: Env, pem: str, node: str) -> int:
    headers = {
        "X-Client-Cert": urllib.parse.quote(pem),
        "X-Nodecert-Node": node,
        "X-Nodecert-Authorize-Secret": _SECRET,
    }
    return env.client.post("/v1/authorize", headers=headers).status_code


def test_every_metric_of_the_table_is_exposed(env: Env) -> None:
    text = env.client.get("/metrics").text
    for spec in METRICS.values():
        name = f"nodecert_{spec.name}" + ("_total" if spec.kind is MetricKind.COUNTER else "")
        assert f"# HELP {name} {spec.help}\n# TYPE {name} {spec.kind.value}\n" in text


def test_issuance_refusals_renewals_decisions_and_revocations_are_counted(env: Env) -> None:
    env.add_node("n1", "alice")
    first = env.issue("alice", "n1", keyType="ec-p256")
    env.issue("alice", "n1", keyType="ec-p256")
    # Not alice's node: refused before the CA, counted with its problem code.
    refused = env.client.post(
        "/generate-cert", json={"nodeId": "n9", "keyType": "ec-p256"}, headers=env.auth("alice")
    )
    assert refused.status_code == 403
    assert _renew(env, first) == 201
    third = env.issue("alice", "n1", keyType="ec-p256")
    # The fourth issuance in a minute is the quota (4 a minute, burst 4, renewal included).
    limited = env.client.post(
        "/generate-cert", json={"nodeId": "n1", "keyType": "ec-p256"}, headers=env.auth("alice")
    )
    assert limited.status_code == 429, limited.text
    serial, pem = third["serialNumber"], str(third["certificate"])
    assert _authorize(env, pem, "n1") == 200
    assert _authorize(env, pem, "n2") == 403
    revoked = env.client.post(
        f"/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"},
        headers=env.auth("alice"),
    )  # fmt: skip
    assert revoked.status_code == 200
    assert _authorize(env, pem, "n1") == 403

    samples = _samples(env)
    route = "/generate-cert"
    issued = {"route": route, "key_type": "ec-p256", "ca": "local"}
    assert _value(samples, "nodecert_issuances_total", **issued, outcome="issued") == 3
    assert _value(samples, "nodecert_issuances_total", **issued, outcome="forbidden") == 1
    assert _value(samples, "nodecert_issuances_total", **issued, outcome="quota_exceeded") == 1
    assert _value(samples, "nodecert_quota_refusals_total", route=route) == 1
    assert _value(samples, "nodecert_issuance_seconds_count", route=route) == 5
    assert _value(samples, "nodecert_renewals_total", outcome="renewed") == 1
    assert _value(samples, "nodecert_ca_call_seconds_count", ca="local") == 4
    assert _value(samples, "nodecert_ledger_commit_seconds_count", store="sqlite") == 4
    allow = {"decision": "allow", "reason": "ok"}
    assert _value(samples, "nodecert_authorize_decisions_total", **allow) == 1
    wrong = {"decision": "deny", "reason": "wrong_node"}
    assert _value(samples, "nodecert_authorize_decisions_total", **wrong) == 1
    gone = {"decision": "deny", "reason": "revoked"}
    assert _value(samples, "nodecert_authorize_decisions_total", **gone) == 1
    assert _value(samples, "nodecert_revocations_total", reason="keyCompromise") == 1
    ok = {"route": "/v1/certificates/{serial}/revoke", "method": "POST", "status": "200"}
    assert _value(samples, "nodecert_http_requests_total", **ok) == 1


def test_labels_never_carry_what_a_client_chose(env: Env) -> None:
    env.client.get("/no/such/path/alice-secret")
    env.client.post(
        "/generate-cert", json={"nodeId": "n1", "keyType": "x" * 50}, headers=env.auth("alice")
    )
    env.client.post("/generate-cert", content=b"\xff not json", headers=env.auth("alice"))
    text = env.client.get("/metrics").text
    assert "alice" not in text
    assert "xxxx" not in text
    assert 'route="unmatched"' in text
    assert 'key_type="invalid"' in text
    assert 'key_type="unknown"' in text


def _csr_pem(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_the_key_label_is_the_one_the_body_asked_for(env: Env) -> None:
    # The use case notes the key it parsed (no second parse of the body); refusals before
    # that are labelled from the body. Each way, the label is what the body asked for.
    env.add_node("n1", "alice")
    env.add_node("web-1", "alice")
    csr = _csr_pem("alice")
    asked = {
        "csr": {"csr": csr},
        "csr and key type": {"csr": csr, "keyType": "ec-p256"},
        "default": {},
        "null key type": {"keyType": None},
    }
    for body in asked.values():
        reply = env.client.post(
            "/generate-cert", json={"nodeId": "n1", **body}, headers=env.auth("alice")
        )
        assert reply.status_code == 201, reply.text
    node_route = "/v1/nodes/{nodeId}/certificate"
    node_cert = env.client.post(
        "/v1/nodes/web-1/certificate",
        json={"dnsNames": ["web-1.example"], "csr": csr},
        headers=env.auth("root", admin=True),
    )
    assert node_cert.status_code == 201, node_cert.text
    refused = env.client.post(  # A CSR and a key type it cannot be: refused, from the body.
        "/generate-cert",
        json={"nodeId": "n1", "csr": csr, "keyType": "dsa"},
        headers=env.auth("alice"),
    )
    assert refused.status_code == 400
    samples = _samples(env)
    issued = {"route": "/generate-cert", "ca": "local", "outcome": "issued"}
    assert _value(samples, "nodecert_issuances_total", **issued, key_type="csr") == 2
    assert _value(samples, "nodecert_issuances_total", **issued, key_type="rsa-2048") == 2
    node = {"route": node_route, "ca": "local", "outcome": "issued", "key_type": "csr"}
    assert _value(samples, "nodecert_issuances_total", **node) == 1
    bad = {"route": "/generate-cert", "ca": "local", "key_type": "csr"}
    assert _value(samples, "nodecert_issuances_total", **bad, outcome="invalid_request") == 1


def test_every_reply_names_its_request_id(env: Env) -> None:
    first = env.client.get("/healthz").headers["x-request-id"]
    second = env.client.post("/generate-cert", json={}).headers["x-request-id"]
    assert len({first, second}) == 2
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in (first, second))


def test_without_a_sink_there_is_no_metrics_route(tmp_path: Path) -> None:
    service = build_service(make_settings(tmp_path / "home"))
    try:
        with TestClient(create_app(service)) as client:
            assert client.get("/metrics").status_code == 404
            assert client.get("/healthz").headers["x-request-id"]
    finally:
        service.close()
