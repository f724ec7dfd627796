"""The retry of a 503 with its Idempotency-Key, on every store and through both fronts.

The whole service (``bootstrap``) on SQLite, PostgreSQL and DynamoDB (moto server), through
the FastAPI app and the Lambda adapter (the recorded REST event, ``Idempotency-Key:
retry-safe-1``): a CA failure before anything was signed releases the claim in that store,
so the retry gets its certificate; a ledger failure after the CA signed keeps it, so the
retry gets the 409. (Which CA failures count as "nothing signed" is decided above the
stores: ``tests/functional/test_idempotency_retry.py``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nodecert.aws.handler import LambdaApp
from nodecert.bootstrap import build_service
from nodecert.core.errors import BackendUnavailableError, StoreUnavailableError
from nodecert.core.values import CertificateRecord, Commit, SigningRequest
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.store.dynamodb.store import create_tables
from tests.integration.conftest import REGION
from tests.kit import ADMIN, RECORDED_CLIENT_ID, api_event

from ..conftest import make_settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "dynamodb"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    overrides: dict[str, Any] = {}
    if request.param == "postgres":
        overrides = {"store": "postgres", "database_url": request.getfixturevalue("postgres_dsn")}
    elif request.param == "dynamodb":
        client = request.getfixturevalue("aws_client")("dynamodb")
        unique = request.getfixturevalue("unique")
        tables = {
            "dynamodb_nodes_table": f"nodes-{unique}",
            "dynamodb_certificates_table": f"certificates-{unique}",
            "dynamodb_limits_table": f"limits-{unique}",
            "dynamodb_outbox_table": f"outbox-{unique}",
        }
        create_tables(
            client,
            nodes_table=tables["dynamodb_nodes_table"],
            certificates_table=tables["dynamodb_certificates_table"],
            limits_table=tables["dynamodb_limits_table"],
            outbox_table=tables["dynamodb_outbox_table"],
        )
        # bootstrap makes its own client; botocore reads the endpoint from the environment.
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("moto_endpoint"))
        overrides = {"store": "dynamodb", "aws_region": REGION, **tables}
    built = build_service(make_settings(tmp_path / "home", key_pool_size=0, **overrides))
    built.administration.put_node(ADMIN, "node-1", "alice")
    yield built
    built.close()


def post(service: Service, front: str) -> tuple[int, dict[str, Any]]:
    """POST /generate-cert for alice's node-1 with Idempotency-Key retry-safe-1."""
    if front == "lambda":
        app = LambdaApp.for_service(service)
        app.client_ids = frozenset({RECORDED_CLIENT_ID})
        reply = app.handle(api_event("rest_generate_cert.json"))
        return reply["statusCode"], json.loads(reply["body"])
    token = service.dev_issuer.mint("alice")  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "retry-safe-1"}
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        body = {"nodeId": "node-1", "keyType": "ec-p256"}
        response = http.post("/generate-cert", json=body, headers=headers)
    return response.status_code, response.json()


class CADownOnce:
    """The local CA, refusing its first request (its KMS key is throttled, say)."""

    builds_in_process = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._refused = False

    def issue(self, request: SigningRequest) -> Any:
        if not self._refused:
            self._refused = True
            raise BackendUnavailableError("ca: KMS is throttling", retry_after=1)
        return self._inner.issue(request)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class LedgerDownOnce:
    """The store's ledger, failing the first new row after the CA signed it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._failed = False

    def record(self, record: CertificateRecord) -> Commit:
        if not self._failed:
            self._failed = True
            raise StoreUnavailableError("store: throttled", retry_after=1)
        return self._inner.record(record)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.mark.parametrize("front", ["fastapi", "lambda"])
def test_after_the_ca_refused_the_retry_gets_its_certificate(service: Service, front: str):
    service.authority.ca = CADownOnce(service.authority.ca)  # type: ignore[assignment]
    status, first = post(service, front)
    assert (status, first["code"]) == (503, "ca_unavailable"), first

    status, retry = post(service, front)

    assert status == 201, retry
    assert [r.serial for r in service.authority.ledger.find(user_id="alice")] == [
        retry["serialNumber"]
    ]


@pytest.mark.parametrize("front", ["fastapi", "lambda"])
def test_after_the_ca_signed_and_the_ledger_failed_the_retry_is_409(service: Service, front: str):
    service.authority.ledger = LedgerDownOnce(service.authority.ledger)  # type: ignore[assignment]
    status, first = post(service, front)
    assert status == 503, first

    status, retry = post(service, front)

    assert (status, retry["code"]) == (409, "idempotent_replay"), retry
    assert service.authority.ledger.find(user_id="alice") == []
