"""The Lambda adapter fed recorded API Gateway events (tests/events/*.json).

The service behind it is the embedded default (local CA, SQLite, dev issuer), so these
tests are about the event shapes: REST (v1) and HTTP API (v2) payloads, the authorizer's
claims, the Bearer fallback, and the HTTP contract's statuses and headers.
"""

from __future__ import annotations

import copy
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.aws import handler as aws_lambda
from nodecert.core.identity import Identity
from tests.kit import api_event as event


def body(response):
    return json.loads(response["body"])


def test_rest_admin_puts_a_node_and_the_owner_gets_a_certificate(app, env):
    put = app.handle(event("rest_put_node_admin.json"))
    assert put["statusCode"] == 200, put["body"]
    assert body(put)["owner"] == "alice"

    issued = app.handle(event("rest_generate_cert.json"))

    assert issued["statusCode"] == 201, issued["body"]
    assert issued["headers"]["Cache-Control"] == "no-store"
    assert issued["headers"]["Content-Type"] == "application/json"
    data = body(issued)
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    trust_domain = env.service.settings.trust_domain
    assert Identity.from_certificate(certificate, trust_domain=trust_domain) == Identity(
        user_id="alice", node_id="node-1"
    )
    key = serialization.load_pem_private_key(data["privateKey"].encode(), password=None)
    assert key.public_key() == certificate.public_key()


def test_http_api_v2_event_with_stage_base64_body_and_flattened_groups(app):
    put = app.handle(event("http_api_put_node.json"))
    assert put["statusCode"] == 200, put["body"]
    assert body(put) == {
        "nodeId": "node-2",
        "owner": "alice",
        "createdAt": body(put)["createdAt"],
        "previousOwner": None,
        "revoked": 0,
        "revokedNodeCertificates": [],
    }


def test_http_api_v2_lists_the_callers_certificates_for_a_node(app):
    app.handle(event("rest_put_node_admin.json"))
    serial = body(app.handle(event("rest_generate_cert.json")))["serialNumber"]

    listed = app.handle(event("http_api_list_certificates.json"))

    assert listed["statusCode"] == 200, listed["body"]
    assert [c["serialNumber"] for c in body(listed)["certificates"]] == [serial]


def test_the_ca_chain_needs_no_authorizer(app):
    response = app.handle(event("rest_ca.json"))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/x-pem-file"
    assert response["body"].startswith("-----BEGIN CERTIFICATE-----")


def test_without_authorizer_a_bearer_token_is_verified(app, env):
    env.add_node("node-1", "alice")
    raw = event("rest_generate_cert.json")
    del raw["requestContext"]["authorizer"]

    missing = app.handle(raw)
    assert missing["statusCode"] == 401
    assert missing["headers"]["Content-Type"] == "application/problem+json"
    assert "WWW-Authenticate" in missing["headers"]

    raw["headers"]["Authorization"] = f"Bearer {env.token('alice')}"
    assert app.handle(raw)["statusCode"] == 201

    raw["headers"]["Authorization"] = "Bearer not-a-token"
    assert app.handle(raw)["statusCode"] == 401


def test_authorizer_groups_decide_admin(app):
    raw = event("rest_put_node_admin.json")
    raw["requestContext"]["authorizer"]["claims"]["cognito:groups"] = "readers,ops"
    response = app.handle(raw)
    assert response["statusCode"] == 403
    assert body(response)["code"] == "forbidden"


def test_a_claims_sub_that_is_not_an_id_is_mapped_and_owns_nothing(app):
    # "../../etc" is the user sha256.…, which owns no node: never a path, never "etc".
    app.handle(event("rest_put_node_admin.json"))
    raw = event("rest_generate_cert.json")
    raw["requestContext"]["authorizer"]["claims"]["sub"] = "../../etc"
    assert app.handle(raw)["statusCode"] == 403


def test_the_body_user_id_must_be_the_callers(app):
    app.handle(event("rest_put_node_admin.json"))
    raw = event("rest_generate_cert.json", body=json.dumps({"nodeId": "node-1", "userId": "bob"}))
    assert app.handle(raw)["statusCode"] == 403


def test_unknown_route_is_404_and_wrong_method_is_405(app):
    assert app.handle(event("rest_ca.json", resource="/nope", path="/nope"))["statusCode"] == 404
    wrong = app.handle(event("rest_ca.json", httpMethod="DELETE"))
    assert wrong["statusCode"] == 405
    assert wrong["headers"]["Allow"] == "GET"


def test_a_body_over_the_limit_is_413(app, env):
    big = json.dumps({"nodeId": "n" * (env.service.settings.max_body_bytes + 10)})
    assert app.handle(event("rest_generate_cert.json", body=big))["statusCode"] == 413


def test_bad_base64_is_400(app):
    raw = event("http_api_put_node.json", body="%%%not base64%%%")
    assert app.handle(raw)["statusCode"] == 400


def test_unexpected_errors_are_a_500_problem_without_details(app, monkeypatch):
    def boom():
        raise RuntimeError("secret detail")

    monkeypatch.setattr(app.handlers.public, "ca", boom)
    response = app.handle(event("rest_ca.json"))
    assert response["statusCode"] == 500
    assert "secret" not in response["body"]


def test_lambda_handler_wires_the_service_once_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    aws_lambda.application.cache_clear()
    try:
        first = aws_lambda.lambda_handler(copy.deepcopy(event("rest_ca.json")), None)
        healthz = event("rest_ca.json", resource="/healthz", path="/healthz")
        again = aws_lambda.lambda_handler(healthz, None)
        assert first["statusCode"] == 200
        assert body(again) == {"status": "ok"}
        assert aws_lambda.application.cache_info().currsize == 1
    finally:
        aws_lambda.application.cache_clear()


def test_rest_admin_gets_a_node_certificate(app):
    assert app.handle(event("rest_put_node_admin.json"))["statusCode"] == 200
    issued = app.handle(
        event(
            "rest_put_node_admin.json",
            resource="/v1/nodes/{nodeId}/certificate",
            path="/v1/nodes/node-1/certificate",
            httpMethod="POST",
            body=json.dumps({"dnsNames": ["node-1.example"], "keyType": "ec-p256"}),
        )
    )
    assert issued["statusCode"] == 201, issued["body"]
    certificate = x509.load_pem_x509_certificate(body(issued)["certificate"].encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-1.example"]
    user = app.handle(
        event(
            "rest_generate_cert.json",
            resource="/v1/nodes/{nodeId}/certificate",
            path="/v1/nodes/node-1/certificate",
            pathParameters={"nodeId": "node-1"},
            body=json.dumps({"dnsNames": ["node-1.example"]}),
        )
    )
    assert user["statusCode"] == 403
