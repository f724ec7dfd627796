"""``Idempotency-Key``: a client retry never makes, nor bills, a second certificate.

Over HTTP on the embedded default (local CA, SQLite), and through the real ACM PCA backend
on botocore's Stubber, where a second ``IssueCertificate`` would be a second bill: the
Stubber has none to give, so a retry that reached PCA again would fail the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from nodecert.backends.acmpca.backend import ACMPCABackend, RetryPolicy
from nodecert.bootstrap import build_service
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.http.app import create_app
from tests.fakes import STUB_CA_ARN as CA_ARN
from tests.fakes import FakeTime, describe_ca, stubbed_pca

from ..conftest import ADMIN, Env, make_settings


def post(env: Env, user: str, key: str | None, **body: object):  # type: ignore[no-untyped-def]
    headers = env.auth(user)
    if key is not None:
        headers["Idempotency-Key"] = key
    return env.client.post("/generate-cert", json={"nodeId": "n1", **body}, headers=headers)


def rows(env: Env, user: str = "alice") -> list[object]:
    return list(env.service.authority.ledger.find(user_id=user))


def test_a_retry_with_the_same_key_is_refused_with_the_first_serial(env: Env) -> None:
    env.add_node("n1", "alice")
    first = post(env, "alice", "order-17", keyType="ec-p256")
    assert first.status_code == 201, first.text

    again = post(env, "alice", "order-17", keyType="ec-p256")

    assert again.status_code == 409, again.text
    problem = again.json()
    assert problem["code"] == "idempotent_replay"
    assert problem["serialNumber"] == first.json()["serialNumber"]
    assert first.json()["serialNumber"] in problem["detail"]
    assert "BEGIN" not in again.text  # Neither a certificate nor a key is replayed.
    assert len(rows(env)) == 1


def test_the_same_key_for_a_different_request_is_400(env: Env) -> None:
    env.add_node("n1", "alice")
    assert post(env, "alice", "order-18", keyType="ec-p256").status_code == 201

    other = post(env, "alice", "order-18", keyType="rsa-2048")

    assert other.status_code == 400, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(rows(env)) == 1


def test_keys_are_scoped_to_the_caller(env: Env) -> None:
    env.add_node("n1", "alice")
    env.add_node("n2", "bob")
    assert post(env, "alice", "same", keyType="ec-p256").status_code == 201
    bob = env.client.post(
        "/generate-cert",
        json={"nodeId": "n2", "keyType": "ec-p256"},
        headers={**env.auth("bob"), "Idempotency-Key": "same"},
    )
    assert bob.status_code == 201, bob.text


def test_without_a_key_every_request_is_a_new_certificate(env: Env) -> None:
    env.add_node("n1", "alice")
    assert post(env, "alice", None, keyType="ec-p256").status_code == 201
    assert post(env, "alice", None, keyType="ec-p256").status_code == 201
    assert len(rows(env)) == 2


def test_a_request_refused_before_the_ca_does_not_use_up_its_key(env: Env) -> None:
    # Not the caller's node yet (403), then a bad key type (400): nothing was signed.
    assert post(env, "alice", "order-19", keyType="ec-p256").status_code == 403
    env.add_node("n1", "alice")
    assert post(env, "alice", "order-19", keyType="dsa-1024").status_code == 400

    assert post(env, "alice", "order-19", keyType="ec-p256").status_code == 201


def test_a_client_csr_retry_is_refused_too(env: Env) -> None:
    env.add_node("n1", "alice")
    key = generate_private_key(KeyType.EC_P256)
    identity = Identity(user_id="alice", node_id="n1")
    csr = build_csr(key, identity, organization="x", trust_domain="x")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    first = post(env, "alice", "csr-1", csr=pem)
    assert first.status_code == 201, first.text
    again = post(env, "alice", "csr-1", csr=pem)
    assert again.status_code == 409
    assert again.json()["serialNumber"] == first.json()["serialNumber"]


# ACM PCA: the request that billed but never answered


def test_a_retry_after_pca_issued_but_never_answered_is_not_sent_to_pca_again(
    tmp_path: Path,
) -> None:
    client, stubber = stubbed_pca()
    describe_ca(stubber)
    # One IssueCertificate (one bill), then PCA stays "in progress" past the deadline.
    stubber.add_response("issue_certificate", {"CertificateArn": f"{CA_ARN}/certificate/abc"})
    for _ in range(50):
        stubber.add_client_error("get_certificate", "RequestInProgressException")
    stubber.activate()
    service = build_service(make_settings(tmp_path / "home"))
    clock = FakeTime()
    service.authority.ca = ACMPCABackend(
        client,
        ca_arn=CA_ARN,
        organization="nodecert",
        trust_domain="nodecert.local",
        retry=RetryPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )
    service.administration.put_node(ADMIN, "n1", "alice")
    token = service.dev_issuer.mint("alice")  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "deploy-42"}
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        first = http.post("/generate-cert", json={"nodeId": "n1"}, headers=headers)
        assert first.status_code == 503, first.text
        calls_after_first = len(stubber._queue)  # type: ignore[attr-defined]

        retry = http.post("/generate-cert", json={"nodeId": "n1"}, headers=headers)

    assert retry.status_code == 409, retry.text
    assert retry.json()["code"] == "idempotent_replay"
    assert "serialNumber" not in retry.json()
    assert "not finished" in retry.json()["detail"]
    # The retry made a new RSA key but asked PCA nothing: no second IssueCertificate.
    assert len(stubber._queue) == calls_after_first  # type: ignore[attr-defined]
    service.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [("/generate-cert", {"nodeId": "n1"}), ("/v1/nodes/n1/certificate", {"dnsNames": ["a.b"]})],
)
def test_a_repeated_authorization_or_idempotency_key_is_refused(
    env: Env, path: str, body: dict[str, object]
) -> None:
    # Singleton fields (RFC 9110 section 5.3): which copy a proxy in front checked, and
    # which one a retry repeats, is anyone's guess; nodecert picks none.
    env.add_node("n1", "admin")
    token = env.token("admin", admin=True)
    other = env.token("alice")
    twice = [("Authorization", f"Bearer {other}"), ("Authorization", f"Bearer {token}")]
    response = env.client.post(path, json=body, headers=twice)
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == "Authorization: sent more than once"
    assert token not in response.text and other not in response.text
    keys = [
        ("Authorization", f"Bearer {token}"),
        ("Idempotency-Key", "a"),
        ("Idempotency-Key", "b"),
    ]
    response = env.client.post(path, json=body, headers=keys)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "Idempotency-Key: sent more than once"
    assert env.service.authority.ledger.find(node_id="n1") == []
