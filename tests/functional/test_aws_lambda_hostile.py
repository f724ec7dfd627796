"""The Lambda adapter fed hostile and malformed API Gateway events.

Every bad event gets a problem document with the right status (never a 500 for what a
client or a misconfigured integration can send), and nothing it logs holds a token.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest

from tests.kit import api_event as event


def problem(response):
    assert response["headers"]["Content-Type"] == "application/problem+json", response
    return json.loads(response["body"])


GARBLED = [
    ("requestContext", "not a mapping"),
    ("requestContext", ["a", "list"]),
    ("requestContext", {"authorizer": "a string"}),
    ("headers", ["Authorization", "Bearer x"]),
    ("headers", "Authorization: Bearer x"),
    ("multiValueHeaders", "Authorization"),
    ("queryStringParameters", ["nodeId"]),
    ("queryStringParameters", "nodeId=n1"),
    ("pathParameters", "nodeId"),
    ("body", 12345),
    ("body", {"userId": "alice"}),
    ("body", ["x"]),
]
GARBLED_V1 = [("httpMethod", 7), ("resource", 7), ("path", {"a": 1})]
GARBLED_V2 = [
    ("requestContext", {"http": "GET"}),
    ("requestContext", {"authorizer": {"jwt": "a string"}}),
    ("rawPath", 7),
    ("routeKey", ["GET", "/v1/nodes"]),
]


def _garbled(name, field, value, app):
    raw = event(name)
    raw[field] = value
    response = app.handle(raw)
    assert response["statusCode"] == 400, response
    assert field in problem(response)["detail"] or "body" in problem(response)["detail"]


@pytest.mark.parametrize(("field", "value"), GARBLED + GARBLED_V1)
def test_a_garbled_rest_event_is_a_400_naming_the_field(app, field, value):
    _garbled("rest_generate_cert.json", field, value, app)


@pytest.mark.parametrize(("field", "value"), GARBLED + GARBLED_V2)
def test_a_garbled_http_api_event_is_a_400_naming_the_field(app, field, value):
    _garbled("http_api_put_node.json", field, value, app)


@pytest.mark.parametrize("bad", [None, 7, "x", ["e"]])
def test_an_event_that_is_not_an_object_is_a_400(app, bad):
    assert app.handle(bad)["statusCode"] == 400


def test_claims_that_are_not_an_object_are_no_claims_a_token_is_needed(app):
    raw = event("rest_generate_cert.json")
    raw["requestContext"]["authorizer"] = {"claims": "sub=root"}
    assert app.handle(raw)["statusCode"] == 401


@pytest.mark.parametrize(
    "node",
    ["..", "../node-1", "node-1/..", "nöde", "node\u0000", "n" * 257, "", " node-1", "%2e%2e"],
)
def test_hostile_node_ids_in_path_parameters_are_refused(app, node):
    raw = event("http_api_put_node.json")
    raw["pathParameters"] = {"nodeId": node}
    raw["rawPath"] = f"/prod/v1/nodes/{node}"
    response = app.handle(raw)
    assert response["statusCode"] in (400, 404), response
    problem(response)


def test_base64_flags_that_lie_are_400(app):
    raw = event("http_api_put_node.json")  # Base64 body, flag true.
    raw["isBase64Encoded"] = False
    assert app.handle(raw)["statusCode"] == 400
    raw = event("http_api_put_node.json")
    raw["isBase64Encoded"] = "false"  # Not a boolean: not a yes either.
    assert app.handle(raw)["statusCode"] == 400
    raw = event("rest_put_node_admin.json")
    raw["isBase64Encoded"] = True
    raw["body"] = '{"owner": "alice"}'
    assert problem(app.handle(raw))["detail"] == "body: not valid base64"


def test_huge_bodies_are_413_before_decoding(app, env):
    limit = env.service.settings.max_body_bytes
    raw = event("rest_put_node_admin.json", body="x" * (limit * 2))
    assert app.handle(raw)["statusCode"] == 413
    raw = event("http_api_put_node.json", body="QUFB" * limit)
    assert app.handle(raw)["statusCode"] == 413


def test_header_names_in_any_case(app, env):
    raw = event("http_api_list_certificates.json")
    raw["requestContext"].pop("authorizer", None)
    raw["headers"]["AUTHORIZATION"] = f"Bearer {env.token('alice')}"
    assert app.handle(raw)["statusCode"] == 200


def test_an_authorization_header_given_twice_with_different_values_is_400(app, env):
    raw = event("rest_generate_cert.json")
    raw["requestContext"].pop("authorizer", None)
    alice, root = env.token("alice"), env.token("root", admin=True)
    raw["headers"]["Authorization"] = f"Bearer {alice}"
    raw["multiValueHeaders"]["Authorization"] = [f"Bearer {root}", f"Bearer {alice}"]
    response = app.handle(raw)
    assert response["statusCode"] == 400
    assert "authorization given twice" in problem(response)["detail"]
    raw["multiValueHeaders"]["Authorization"] = [f"Bearer {alice}", f"Bearer {alice}"]
    assert app.handle(raw)["statusCode"] != 400
    raw = event("rest_generate_cert.json")
    raw["headers"]["idempotency-key"] = "another"  # Beside Idempotency-Key: retry-safe-1.
    assert "idempotency-key given twice" in problem(app.handle(raw))["detail"]


def test_the_body_cannot_override_the_authorizers_caller(app, env):
    app.handle(event("rest_put_node_admin.json"))
    for extra in ({"userId": "root"}, {"admin": True}, {"principal": "root"}):
        raw = event("rest_generate_cert.json")
        raw["body"] = json.dumps({"nodeId": "node-1", **extra})
        response = app.handle(raw)
        assert response["statusCode"] in (400, 403), response
    raw = event("rest_generate_cert.json")
    raw["headers"]["Authorization"] = f"Bearer {env.token('root', admin=True)}"
    raw["requestContext"]["authorizer"]["claims"]["sub"] = "mallory"
    assert app.handle(raw)["statusCode"] == 403  # The claims are the caller, not the token.


def test_the_matched_route_decides_not_the_raw_path(app):
    raw = event("http_api_put_node.json")
    raw["routeKey"] = "GET /v1/ca"
    raw["rawPath"] = "/prod/v1/nodes/node-2"
    assert app.handle(raw)["statusCode"] == 405  # The CA route has no PUT.
    raw = event("rest_put_node_admin.json")
    raw["resource"] = "/admin/{proxy+}"
    raw["pathParameters"] = {"proxy": "v1/nodes/node-1"}
    assert app.handle(raw)["statusCode"] == 404
    raw = event("rest_put_node_admin.json")
    raw["resource"] = "/v1/nodes/{nodeId}"
    raw["path"] = "/v1/certificates/abc/revoke"
    assert app.handle(raw)["statusCode"] == 200


def test_no_token_reaches_the_logs(app, env, caplog):
    caplog.set_level(logging.DEBUG)
    token = env.token("alice")
    events = []
    for name in ("rest_generate_cert.json", "http_api_put_node.json", "rest_renew.json"):
        raw = event(name)
        raw["requestContext"].pop("authorizer", None)
        raw["headers"]["Authorization"] = f"Bearer {token}"
        events += [raw, {**raw, "body": 7}, {**raw, "requestContext": "x"}]
        events.append({**raw, "body": token, "isBase64Encoded": True})
    for raw in events:
        problem_or_reply = app.handle(copy.deepcopy(raw))
        assert problem_or_reply["statusCode"] != 500, problem_or_reply
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


def test_an_http_api_default_route_in_payload_format_1_routes_on_the_path(app):
    raw = event("rest_ca.json")
    raw.update(version="1.0", resource="$default", path="/v1/ca")
    assert app.handle(raw)["statusCode"] == 200
