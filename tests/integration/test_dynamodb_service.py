"""The whole service on DynamoDB (moto server) with a local CA, through the ASGI app.

``bootstrap`` wires the limits table in, so proof-of-possession renewal (``ReplayGuard``)
and the per-user issuance rate (``RateLimiter``) work as they do on SQLite, and hold
across service instances (Lambda containers) that share the tables.
"""

from __future__ import annotations

import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.core.tokens import mint_renewal_token, renewal_audience
from nodecert.http.app import create_app
from nodecert.store.dynamodb.limits import DynamoDBLimits
from nodecert.store.dynamodb.store import create_tables
from tests.conftest import make_settings
from tests.integration.conftest import REGION
from tests.kit import ADMIN, TRUST_DOMAIN, issue


@pytest.fixture
def settings(aws_client, moto_endpoint, unique, monkeypatch, tmp_path):
    client = aws_client("dynamodb")
    tables = {
        "nodes_table": f"nodes-{unique}",
        "certificates_table": f"certificates-{unique}",
        "limits_table": f"limits-{unique}",
        "outbox_table": f"outbox-{unique}",
    }
    create_tables(client, **tables)
    # bootstrap makes its own client; botocore reads the endpoint from the environment.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    def make(**overrides):
        return make_settings(
            tmp_path / "home",
            store="dynamodb",
            aws_region=REGION,
            dynamodb_nodes_table=tables["nodes_table"],
            dynamodb_certificates_table=tables["certificates_table"],
            dynamodb_limits_table=tables["limits_table"],
            dynamodb_outbox_table=tables["outbox_table"],
            **overrides,
        )

    yield make
    for table in tables.values():
        client.delete_table(TableName=table)


def _renew_headers(cert):
    pop = mint_renewal_token(cert.certificate, cert.key, audience=renewal_audience(TRUST_DOMAIN))
    return {"Authorization": "Bearer " + pop}


def test_renewal_works_and_a_replay_is_refused_by_another_instance(settings, caplog):
    caplog.set_level(logging.WARNING, logger="nodecert")
    first, second = build_service(settings()), build_service(settings())
    assert first.renewer is not None
    assert isinstance(first.renewer.replay, DynamoDBLimits)
    cert = issue(first.authority, "alice", "n1", admin=first.administration)
    headers = _renew_headers(cert)

    renewed = TestClient(create_app(first)).post("/v1/renew", headers=headers)
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["renewedFrom"] == cert.serial
    # The same token at another Lambda instance: the limits table remembers it.
    replay = TestClient(create_app(second)).post("/v1/renew", headers=headers)
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    # A fresh token for the same certificate: it renewed once already (at-most-once).
    again = TestClient(create_app(second)).post("/v1/renew", headers=_renew_headers(cert))
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "already_renewed"
    # Its successor renews.
    successor = renewed.json()
    pem, key = successor["certificate"], successor["privateKey"]
    token = mint_renewal_token(
        x509.load_pem_x509_certificate(pem.encode()),
        serialization.load_pem_private_key(key.encode(), password=None),  # type: ignore[arg-type]
        audience=renewal_audience(TRUST_DOMAIN),
    )
    onward = TestClient(create_app(second)).post(
        "/v1/renew", headers={"Authorization": f"Bearer {token}"}
    )
    assert onward.status_code == 201, onward.text
    assert "rate is off" not in caplog.text


def test_the_issuance_rate_holds_on_dynamodb(settings):
    services = [
        build_service(settings(quota_per_minute=2, quota_burst=2, max_active_per_node=0))
        for _ in range(2)
    ]
    services[0].administration.put_node(ADMIN, "n1", "alice")
    token = services[0].dev_issuer.mint("alice")

    def generate(service):
        return TestClient(create_app(service)).post(
            "/generate-cert",
            json={"nodeId": "n1", "keyType": "ec-p256"},
            headers={"Authorization": f"Bearer {token}"},
        )

    statuses = [generate(services[i % 2]).status_code for i in range(3)]
    assert statuses == [201, 201, 429]
    refused = generate(services[1])
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("rate:")
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert len(services[0].authority.ledger.find(user_id="alice")) == 2
