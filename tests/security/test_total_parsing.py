"""Every value from a client, on both front ends: never a 5xx, a redirect or a traceback.

Hypothesis generates what a client controls: JWT headers and claims of every JSON type and
size (signed with the dev issuer's real key, so that only parsing stands in the way), renewal
tokens with a self-signed ``x5c``, query strings and bodies. Each goes to the FastAPI app and
to the Lambda handler (recorded API Gateway events from ``tests/events``, the authorizer's
claims hostile too). Whatever it sends:

- the status is below 500, and never a 3xx;
- a 4xx is a problem document with a ``code``;
- the only ``Location`` is a 201's ``/v1/certificates/<serial>``, never built from the request;
- nothing is logged at ERROR, and no traceback.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.aws.handler import ROUTE_KEYS, LambdaApp
from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.values import Principal
from nodecert.http.api import ROUTES
from nodecert.http.app import create_app
from nodecert.issuing.renewal import renewal_audience
from tests.kit import TRUST_DOMAIN, api_event, issue
from tests.unit.test_jose_properties import CLAIMS, HEADER_MEMBERS, PYTHON_VALUES, VALUES

_HOME = Path(tempfile.mkdtemp(prefix="nodecert-total-"))
_SERVICE = build_service(Settings(home=_HOME, trust_domain=TRUST_DOMAIN, key_pool_size=0))
_SERVICE.administration.put_node(Principal("root", is_admin=True), "n1", "alice")
_CERT = issue(_SERVICE.authority, "alice", "n1", admin=_SERVICE.administration)
_DEV_KEY = serialization.load_pem_private_key((_HOME / "dev-issuer.key").read_bytes(), None)
assert _SERVICE.dev_issuer is not None
_KID = _SERVICE.dev_issuer.kid
_CLIENT = TestClient(create_app(_SERVICE), client=("127.0.0.1", 40000))
_LAMBDA = LambdaApp.for_service(_SERVICE)
_ES256 = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
_LOCATION = re.compile(r"/v1/certificates/[0-9a-f]{1,40}")

PROPERTIES = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

# Every bearer route, with its path filled in, for FastAPI ("PUT /v1/nodes/n1").
BEARER_ROUTES = [
    key.replace("{nodeId}", "n1").replace("{serial}", _CERT.serial).replace("{userId}", "alice")
    for key in ROUTE_KEYS
    if next(r for r in ROUTES if r.key == key).access.authenticated
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _members(base: dict[str, Any], changes: list[tuple[str, str]]) -> str:
    members = {k: json.dumps(v) for k, v in base.items()} | dict(changes)
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in members.items()) + "}"


def _signed(header: str, claims: str, key: Any = _DEV_KEY) -> str:
    signing_input = f"{_b64(header.encode())}.{_b64(claims.encode())}"
    return f"{signing_input}.{_b64(_ES256.sign(signing_input.encode(), key))}"


def _bearer(header: list[tuple[str, str]], claims: list[tuple[str, str]]) -> str:
    now = int(time.time())
    base = {"iss": "urn:nodecert:dev-issuer", "aud": "nodecert", "sub": "alice"}
    base |= {"token_use": "id", "iat": now, "exp": now + 600}
    return _signed(_members({"alg": "ES256", "kid": _KID}, header), _members(base, claims))


def _renewal(header: list[tuple[str, str]], claims: list[tuple[str, str]]) -> str:
    now = int(time.time())
    der = _CERT.certificate.public_bytes(serialization.Encoding.DER)
    base_header = {"alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
    base = {"aud": renewal_audience(TRUST_DOMAIN), "iat": now, "exp": now + 60, "jti": "j"}
    return _signed(_members(base_header, header), _members(base, claims), _CERT.key)


def _check(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status < 500, (status, body[:300])
    assert not 300 <= status < 400, (status, headers)
    location = {k.lower(): v for k, v in headers.items()}.get("location")
    assert location is None or (status == 201 and _LOCATION.fullmatch(location)), location
    if status >= 400:
        assert json.loads(body)["code"]


def _fastapi(method: str, path: str, **kwargs: Any) -> None:
    response = _CLIENT.request(method, path, **kwargs)
    _check(response.status_code, dict(response.headers), response.content)


def _lambda(event: dict[str, Any]) -> None:
    response = _LAMBDA.handle(event)
    _check(response["statusCode"], response["headers"], response["body"].encode())


def _event(route: str, *, token: str | None, body: bytes = b"", query: str = "") -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for ``route`` from a recorded one, no authorizer."""
    method, template = route.split(" ", 1)
    raw = api_event("http_api_list_certificates.json")
    raw["routeKey"] = raw["requestContext"]["routeKey"] = route
    path = template.replace("{nodeId}", "n1").replace("{serial}", _CERT.serial)
    raw["rawPath"] = "/prod" + path.replace("{userId}", "alice")
    raw["requestContext"]["http"].update(method=method, path=raw["rawPath"])
    raw["pathParameters"] = {"nodeId": "n1", "serial": _CERT.serial, "userId": "alice"}
    raw["requestContext"].pop("authorizer")
    raw["headers"] = {} if token is None else {"authorization": f"Bearer {token}"}
    raw["body"], raw["isBase64Encoded"] = base64.b64encode(body).decode(), True
    raw["rawQueryString"] = query
    raw["queryStringParameters"] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return raw


@pytest.fixture(autouse=True)
def _no_error_logged(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text


HEADERS = st.lists(st.tuples(st.sampled_from(HEADER_MEMBERS), VALUES), max_size=3)
TOKEN_CLAIMS = st.lists(st.tuples(st.sampled_from(CLAIMS), VALUES), max_size=4)


@PROPERTIES
@given(route=st.sampled_from(BEARER_ROUTES), header=HEADERS, claims=TOKEN_CLAIMS)
def test_any_bearer_token_on_any_route_is_never_a_5xx(route, header, claims):
    method, path = route.split(" ", 1)
    token = _bearer(header, claims)
    _fastapi(method, path, headers={"Authorization": f"Bearer {token}"}, content=b"{}")
    template = next(k for k in ROUTE_KEYS if k.split(" ")[0] == method and _same(k, route))
    _lambda(_event(template, token=token, body=b"{}"))


def _same(template: str, route: str) -> bool:
    pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
    return re.fullmatch(pattern, route) is not None


@PROPERTIES
@given(header=HEADERS, claims=TOKEN_CLAIMS, body=st.sampled_from([b"", b"{}", b"[]", b"x"]))
def test_any_renewal_token_is_never_a_5xx(header, claims, body):
    token = _renewal(header, claims)
    _fastapi("POST", "/v1/renew", headers={"Authorization": f"Bearer {token}"}, content=body)
    _lambda(_event("POST /v1/renew", token=token, body=body))


# Text as a Lambda event may hold it: JSON can spell lone surrogates ("\ud800").
EVENT_TEXT = st.one_of(
    st.text(max_size=200),
    st.tuples(st.text(max_size=20), st.sampled_from(["\ud800", "\udfff", "\x00"])).map("".join),
)


@PROPERTIES
@given(junk=EVENT_TEXT, scheme=st.sampled_from(["Bearer ", "bearer ", "", "Basic "]))
def test_any_authorization_value_is_never_a_5xx(junk, scheme):
    value = scheme + junk
    if value.isprintable() and value.isascii() and value == value.strip():
        _fastapi("GET", "/v1/nodes", headers={"Authorization": value})
    raw = _event("GET /v1/nodes", token=None)
    raw["headers"]["authorization"] = value
    _lambda(raw)


QUERY = st.lists(
    st.tuples(
        st.sampled_from(["limit", "nodeId", "status", "cursor", "x", "limit[]"]),
        st.one_of(
            st.text(max_size=30),
            st.sampled_from(["²", "\u0661\u0662", "1" * 5000, "+5", " 5", "-1", "0x10", "n1"]),
        ),
    ),
    max_size=4,
)


@PROPERTIES
@given(query=QUERY)
def test_any_query_string_is_never_a_5xx(query):
    text = urllib.parse.urlencode(query)
    token = _SERVICE.dev_issuer.mint("alice")  # type: ignore[union-attr]
    _fastapi("GET", f"/v1/certificates?{text}", headers={"Authorization": f"Bearer {token}"})
    _lambda(_event("GET /v1/certificates", token=token, query=text))


JSON_BODIES = st.one_of(
    st.binary(max_size=200),
    # Valid UTF-8 JSON whose escapes make a lone surrogate, in a key or a value.
    st.sampled_from(["nodeId", "csr", "keyType", "owner", "reason", "certificate"]).map(
        lambda name: b'{"%s": "\\ud800", "\\udfff": ["\\ud83d"]}' % name.encode()
    ),
    st.dictionaries(
        st.sampled_from(["nodeId", "userId", "keyType", "csr", "validityDays", "owner"])
        | st.sampled_from(["dnsNames", "reason", "certificate"]),
        PYTHON_VALUES,
        max_size=4,
    ).map(lambda d: json.dumps(d, default=str).encode()),
)


@PROPERTIES
@given(
    route=st.sampled_from([r for r in ROUTE_KEYS if r.startswith(("POST", "PUT"))]),
    body=JSON_BODIES,
)
def test_any_body_on_any_route_is_never_a_5xx(route, body):
    token = _SERVICE.dev_issuer.mint("root", admin_group=_SERVICE.settings.admin_group)  # type: ignore[union-attr]
    path = route.split(" ", 1)[1].replace("{nodeId}", "n1").replace("{userId}", "alice")
    path = path.replace("{serial}", _CERT.serial)
    # Never n1's owner or certificates changed: other examples need them.
    if route in ("PUT /v1/nodes/{nodeId}",) or "revoke" in route:
        path = path.replace("/n1", "/n2").replace(_CERT.serial, "ab").replace("alice", "zed")
    _fastapi(route.split(" ")[0], path, headers={"Authorization": f"Bearer {token}"}, content=body)
    template_path = path
    raw = _event(route, token=token, body=body)
    raw["rawPath"] = "/prod" + template_path
    raw["pathParameters"] = {"nodeId": "n2" if "/n2" in path else "n1", "serial": "ab"}
    raw["pathParameters"]["userId"] = "zed"
    _lambda(raw)


SEGMENT = st.one_of(
    st.text(max_size=80).map(lambda t: urllib.parse.quote(t, safe="")),
    st.sampled_from(["..", ".", "%00", "%ff", "%2e%2e", "%2F", "a" * 300, "", "%", "%zz"]),
)


@PROPERTIES
@given(
    route=st.sampled_from([r.key for r in ROUTES]),
    segment=SEGMENT,
    slash=st.booleans(),
)
def test_any_path_segment_on_any_route_is_never_a_5xx(route, segment, slash):
    method, template = route.split(" ", 1)
    path = re.sub(r"\{\w+\}", segment, template) + ("/" if slash else "")
    token = _SERVICE.dev_issuer.mint("alice")  # type: ignore[union-attr]
    _fastapi(method, path, headers={"Authorization": f"Bearer {token}"}, content=b"{}")


@settings(PROPERTIES, max_examples=100)
@given(
    field=st.sampled_from(["body", "header", "query", "path", "method"]),
    text=EVENT_TEXT,
    encoded=st.booleans(),
)
def test_any_text_in_a_lambda_event_is_never_a_5xx(field, text, encoded):
    raw = api_event("rest_generate_cert.json")
    if field == "body":
        raw["body"], raw["isBase64Encoded"] = text, encoded
    elif field == "header":
        raw["headers"]["Idempotency-Key" if encoded else text] = text
    elif field == "query":
        raw["queryStringParameters"] = {text: text, "limit": text}
        raw["multiValueQueryStringParameters"] = {text: [text]}
    elif field == "path":
        raw["resource"], raw["path"] = ("/{proxy+}", text) if encoded else ("/generate-cert", text)
        raw["pathParameters"] = {"proxy": text}
    else:
        raw["httpMethod"] = text
    _lambda(raw)


@PROPERTIES
@given(
    name=st.sampled_from(["rest_generate_cert.json", "http_api_list_certificates.json"]),
    claims=st.dictionaries(st.sampled_from(CLAIMS), PYTHON_VALUES, max_size=5),
)
def test_any_claims_from_an_api_gateway_authorizer_are_never_a_5xx(name, claims):
    raw = api_event(name)
    authorizer = raw["requestContext"]["authorizer"]
    holder = authorizer.get("jwt", authorizer)
    holder["claims"] = {**holder["claims"], **copy.deepcopy(claims)}
    _lambda(raw)


@pytest.fixture(scope="module", autouse=True)
def _close() -> object:
    yield None
    _SERVICE.close()
