"""The node-side routes on the Lambda adapter: renewal and revoke-all, from recorded events.

``POST /v1/renew`` sits behind ``Authorizer: NONE`` in the template: its Bearer token is a
proof-of-possession JWT, so the recorded renew events carry no authorizer claims, and the
adapter must neither need nor use claims for it. The service is the embedded default
(local CA, SQLite, dev issuer), as in ``test_aws_lambda.py``.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.aws import handler as aws_lambda
from nodecert.aws.handler import LambdaApp
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.tokens import mint_renewal_token, renewal_audience
from nodecert.http.api import Handlers
from nodecert.http.public_routes import PublicRoutes
from nodecert.http.routes import Routes
from tests.kit import TRUST_DOMAIN, api_event, issue


def event(name, *, pop=None, **changes):
    data = api_event(name, **changes)
    if pop is not None:
        for key in list(data["headers"]):
            if key.lower() == "authorization":
                data["headers"][key] = f"Bearer {pop}"
    return data


def pop_token(cert):
    return mint_renewal_token(cert.certificate, cert.key, audience=renewal_audience(TRUST_DOMAIN))


def body(response):
    return json.loads(response["body"])


@pytest.fixture
def alice(env):
    return issue(env.service.authority, "alice", "node-1", admin=env.service.administration)


def test_rest_renew_with_a_pop_token_then_the_replay_is_refused(app, env, alice):
    raw = event("rest_renew.json", pop=pop_token(alice))
    assert "authorizer" not in raw["requestContext"]

    renewed = app.handle(raw)

    assert renewed["statusCode"] == 201, renewed["body"]
    assert renewed["headers"]["Cache-Control"] == "no-store"
    data = body(renewed)
    assert data["renewedFrom"] == alice.serial
    assert renewed["headers"]["Location"] == f"/v1/certificates/{data['serialNumber']}"
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert Identity.from_certificate(certificate, trust_domain=TRUST_DOMAIN) == Identity(
        user_id="alice", node_id="node-1"
    )
    key = serialization.load_pem_private_key(data["privateKey"].encode(), password=None)
    assert key.public_key() == certificate.public_key()
    row = env.service.authority.ledger.get(data["serialNumber"])
    assert row is not None and row.renewed_from == alice.serial

    replay = app.handle(raw)

    assert replay["statusCode"] == 401
    assert replay["headers"]["Content-Type"] == "application/problem+json"
    assert "WWW-Authenticate" in replay["headers"]
    assert "already used" in body(replay)["detail"]


def test_http_api_renew_with_stage_base64_and_a_csr(app, alice):
    key = generate_private_key(KeyType.EC_P384)
    csr = build_csr(key, Identity("x", "y"), organization="o", trust_domain="t.example")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    raw = event("http_api_renew.json", pop=pop_token(alice))
    raw["body"] = base64.b64encode(json.dumps({"csr": pem}).encode()).decode()

    renewed = app.handle(raw)

    assert renewed["statusCode"] == 201, renewed["body"]
    data = body(renewed)
    assert "privateKey" not in data
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert certificate.public_key() == key.public_key()
    assert (data["userId"], data["nodeId"]) == ("alice", "node-1")  # Not the CSR's subject.


def test_renew_never_takes_the_caller_from_authorizer_claims(app, env, alice):
    # Claims (here an admin's) are neither needed nor used: without a PoP token it is a 401,
    # and with alice's token the certificate is alice's, whoever the claims name.
    claims = {"sub": "root", "cognito:groups": "nodecert-admins"}
    raw = event("rest_renew.json")
    raw["requestContext"]["authorizer"] = {"claims": claims}
    del raw["headers"]["Authorization"]
    missing = app.handle(raw)
    assert missing["statusCode"] == 401
    assert missing["headers"]["Content-Type"] == "application/problem+json"

    raw["headers"]["Authorization"] = f"Bearer {pop_token(alice)}"
    renewed = app.handle(raw)
    assert renewed["statusCode"] == 201, renewed["body"]
    assert body(renewed)["userId"] == "alice"


def test_a_user_token_is_no_renewal_token(app, env, alice):
    response = app.handle(event("rest_renew.json", pop=env.token("alice")))
    assert response["statusCode"] == 401
    assert body(response)["detail"].startswith("renewal token:")


def test_renewing_a_revoked_certificate_is_403(app, env, alice):
    revoked = app.handle(event("rest_revoke_all_node.json"))
    assert revoked["statusCode"] == 200, revoked["body"]
    response = app.handle(event("rest_renew.json", pop=pop_token(alice)))
    assert response["statusCode"] == 403
    assert "revoked" in body(response)["detail"]


def test_rest_revoke_all_for_a_node_by_its_owner(app, env, alice):
    second = issue(env.service.authority, "alice", "node-1", admin=env.service.administration)
    other = issue(env.service.authority, "bob", "node-2", admin=env.service.administration)

    response = app.handle(event("rest_revoke_all_node.json"))

    assert response["statusCode"] == 200, response["body"]
    data = body(response)
    assert data["count"] == 2
    assert {c["serialNumber"] for c in data["revoked"]} == {alice.serial, second.serial}
    assert {c["revocationReason"] for c in data["revoked"]} == {"keyCompromise"}
    decider = env.service.decider
    assert decider.decide(alice.certificate, "node-1").reason.value == "revoked"
    assert decider.decide(other.certificate, "node-2").allowed


def test_revoke_all_for_another_users_node_is_403(app, env, alice):
    raw = event("rest_revoke_all_node.json")
    raw["requestContext"]["authorizer"]["claims"]["sub"] = "bob"
    response = app.handle(raw)
    assert response["statusCode"] == 403
    assert response["headers"]["Content-Type"] == "application/problem+json"
    assert body(response)["code"] == "forbidden"
    assert env.service.decider.decide(alice.certificate, "node-1").allowed


def test_an_admin_revokes_all_of_any_node(app, alice):
    raw = event("rest_revoke_all_node.json")
    raw["requestContext"]["authorizer"]["claims"].update(
        {"sub": "root", "cognito:groups": "nodecert-admins,ops"}
    )
    assert body(app.handle(raw))["count"] == 1


def test_http_api_revoke_all_for_a_user_by_that_user_only(app, env, alice):
    issue(env.service.authority, "alice", "node-3", admin=env.service.administration)
    bob = event("http_api_revoke_all_user.json")
    bob["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "bob"
    denied = app.handle(bob)
    assert denied["statusCode"] == 403
    assert body(denied)["code"] == "forbidden"

    response = app.handle(event("http_api_revoke_all_user.json"))

    assert response["statusCode"] == 200, response["body"]
    assert body(response)["count"] == 2
    assert {c["revocationReason"] for c in body(response)["revoked"]} == {"cessationOfOperation"}


def test_revoke_all_without_authorizer_verifies_the_bearer_token(app, env, alice):
    raw = event("rest_revoke_all_node.json")
    del raw["requestContext"]["authorizer"]
    assert app.handle(raw)["statusCode"] == 401
    raw["headers"]["Authorization"] = f"Bearer {env.token('alice')}"
    assert app.handle(raw)["statusCode"] == 200


def test_a_bad_reason_is_the_same_400_as_over_http(app, env, alice):
    raw = event("rest_revoke_all_node.json", body=json.dumps({"reason": "whim"}))
    response = app.handle(raw)
    headers = env.auth("alice")
    over_http = env.client.post("/v1/nodes/node-1/revoke-all", headers=headers, content=raw["body"])
    assert response["statusCode"] == over_http.status_code == 400
    assert body(response)["detail"] == over_http.json()["detail"]


@pytest.mark.parametrize(
    ("method", "resource", "path", "status"),
    [
        ("POST", "/v1/authorize", "/v1/authorize", 404),  # The authorizer Lambda's job.
        ("GET", "/v1/crl", "/v1/crl", 404),  # Local CA only; ACM PCA publishes its CRL to S3.
        ("GET", "/v1/renew", "/v1/renew", 405),
        ("GET", "/v1/nodes/{nodeId}/revoke-all", "/v1/nodes/node-1/revoke-all", 405),
    ],
)
def test_routes_left_out_on_lambda(app, method, resource, path, status):
    params = {"nodeId": "node-1"} if "{nodeId}" in resource else None
    raw = event("rest_ca.json", httpMethod=method, resource=resource, path=path)
    response = app.handle({**raw, "pathParameters": params})
    assert response["statusCode"] == status
    assert response["headers"]["Content-Type"] == "application/problem+json"
    if status == 405:
        assert response["headers"]["Allow"] == "POST"


def test_without_node_side_routes_renewal_is_404(env, alice):
    settings = env.service.settings
    bare = LambdaApp(
        Handlers(Routes.for_service(env.service), PublicRoutes.for_service(env.service)),
        admin_group=settings.admin_group,
        max_body_bytes=settings.max_body_bytes,
    )
    response = bare.handle(event("rest_renew.json", pop=pop_token(alice)))
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["detail"] == "renew: not available in this deployment"


def test_application_wires_the_node_routes_with_a_renewer(monkeypatch, tmp_path):
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    aws_lambda.application.cache_clear()
    try:
        app = aws_lambda.application()
        assert app.handlers.node is not None
        assert app.handlers.node.renewer is not None
        assert app.handlers.node.renewer.authority is app.handlers.user.authority
    finally:
        aws_lambda.application.cache_clear()
