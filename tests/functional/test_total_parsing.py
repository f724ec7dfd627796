"""Query parameters and client certificates that used to reach a 500, on both front ends.

``limit`` with Unicode digits (``²`` passes ``str.isdigit()``, then ``int()`` refuses it)
or with thousands of digits (``int()`` refuses over 4,300) was a ``ValueError``: now a 400.
Certificates whose extensions cryptography >= 51 refuses only when they are read (an
empty subjectAltName, a malformed extendedKeyUsage) are a 4xx wherever a client hands one
over: ``X-Client-Cert``, the body of ``/v1/authorize``, a renewal token's ``x5c``, a CSR.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.kit import api_event

HOSTILE_LIMITS = [
    "²",  # SUPERSCRIPT TWO: str.isdigit() is true, int() refuses it.
    "\u0661\u0662",  # Arabic-Indic 12: int() takes it, the contract does not.
    "\uff15",  # FULLWIDTH DIGIT FIVE.
    "1" * 5000,  # Over int()'s 4,300-digit limit.
    "9" * 30,
    "+5",
    "-5",
    " 5",
    "5 ",
    "0x10",
    "1e2",
    "5.0",
    "",
    "0",
    "1001",
    "\x00",
]


@pytest.mark.parametrize("limit", HOSTILE_LIMITS)
def test_a_hostile_limit_is_a_400_over_http(env, limit, caplog):
    caplog.set_level(logging.INFO)
    response = env.client.get(
        "/v1/certificates", params={"limit": limit}, headers=env.auth("alice")
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("limit: ")
    assert "ERROR" not in caplog.text


@pytest.mark.parametrize("limit", HOSTILE_LIMITS)
def test_a_hostile_limit_is_a_400_in_the_lambda(app, limit):
    raw = api_event("http_api_list_certificates.json")
    raw["queryStringParameters"]["limit"] = limit
    raw["rawQueryString"] += "&" + urllib.parse.urlencode({"limit": limit})
    response = app.handle(raw)
    assert response["statusCode"] == 400, response
    assert json.loads(response["body"])["detail"].startswith("limit: ")


@pytest.mark.parametrize("limit", ["1", "0001", "1000", "50"])
def test_ascii_limits_in_range_are_pages(env, limit):
    response = env.client.get(
        "/v1/certificates", params={"limit": limit}, headers=env.auth("alice")
    )
    assert response.status_code == 200, response.text


def test_a_repeated_query_parameter_is_refused_in_the_lambda_as_over_http(app, env):
    raw = api_event("http_api_list_certificates.json")
    raw["rawQueryString"] = "nodeId=node-1&nodeId=node-2"
    raw["queryStringParameters"]["nodeId"] = "node-1,node-2"  # How HTTP APIs join them.
    response = app.handle(raw)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["detail"] == "nodeId: sent more than once"
    raw = api_event("rest_generate_cert.json")
    raw["multiValueQueryStringParameters"] = {"limit": ["5", "500"]}
    assert json.loads(app.handle(raw)["body"])["detail"] == "limit: sent more than once"
    response = env.client.get("/v1/certificates?limit=5&limit=500", headers=env.auth("alice"))
    assert response.json()["detail"] == "limit: sent more than once"
    # Every route, as the Lambda front end (whose query map is not per route).
    for path in ("/v1/nodes?x=1&x=2", "/healthz?a&a", "/generate-cert?nodeId=a&nodeId=b"):
        response = env.client.get(path, headers=env.auth("alice"))
        assert response.status_code == 400, response.text
        assert response.json()["detail"].endswith(": sent more than once")
    raw = api_event("http_api_list_certificates.json")
    raw["rawQueryString"] = "x=1&x=2"
    assert app.handle(raw)["statusCode"] == 400


# Certificates and CSRs whose extensions are refused only when read (cryptography >= 51).
LAZY = {
    "empty-subjectAltName": x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x00"
    ),
    "malformed-extendedKeyUsage": x509.UnrecognizedExtension(
        ExtensionOID.EXTENDED_KEY_USAGE, b"\x30\x03\x02\x01\x00"
    ),
    "malformed-keyUsage": x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x05\x00"),
    "malformed-basicConstraints": x509.UnrecognizedExtension(
        ExtensionOID.BASIC_CONSTRAINTS, b"\x04\x00"
    ),
}
_KEY = ec.generate_private_key(ec.SECP256R1())
_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "n1"),
    ]
)


def _certificate(extension, *, issuer_name=None, issuer_key=None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_NAME)
        .issuer_name(issuer_name or _NAME)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(extension, critical=False)
    )
    key = issuer_key or _KEY
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
    )
    return builder.sign(key, hashes.SHA256())


def _renewal_token(certificate: x509.Certificate, audience: str) -> str:
    now = int(time.time())
    der = certificate.public_bytes(serialization.Encoding.DER)
    claims = {"aud": audience, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, _KEY, "ES256", headers={"x5c": [base64.b64encode(der).decode()]})


@pytest.mark.parametrize("signed_by", ["itself", "our CA"])
@pytest.mark.parametrize("name", sorted(LAZY))
def test_certificates_with_lazily_refused_extensions_are_4xx_everywhere(
    env, app, caplog, name, signed_by
):
    caplog.set_level(logging.INFO)
    ca = env.service.authority.ca
    if signed_by == "our CA":
        # Only the CA can sign these: a stand-in for one issued before a parser changed.
        certificate = _certificate(
            LAZY[name], issuer_name=ca.certificate.subject, issuer_key=ca._state.signer.key
        )
    else:
        certificate = _certificate(LAZY[name])
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    env.add_node("n1", "alice")
    client = env.client
    statuses = [
        client.post(
            "/v1/authorize",
            headers={"X-Client-Cert": urllib.parse.quote(pem), "X-Nodecert-Node": "n1"},
        ),
        client.post("/v1/authorize", json={"certificate": pem, "nodeId": "n1"}),
    ]
    audience = f"spiffe://{env.service.settings.trust_domain}/nodecert"
    renew = {"Authorization": f"Bearer {_renewal_token(certificate, audience)}"}
    statuses.append(client.post("/v1/renew", headers=renew))
    lambda_renew = api_event("rest_renew.json")
    lambda_renew["headers"]["Authorization"] = renew["Authorization"]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_NAME)
        .add_extension(LAZY[name], critical=False)
        .sign(_KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    statuses.append(
        client.post("/generate-cert", json={"nodeId": "n1", "csr": csr}, headers=env.auth("alice"))
    )
    statuses.append(
        client.post(
            "/v1/nodes/n1/certificate",
            json={"dnsNames": ["n1.example"], "csr": csr},
            headers=env.auth("root", admin=True),
        )
    )
    for response in statuses:
        assert response.status_code < 500, (response.request.url, response.text)
    assert app.handle(lambda_renew)["statusCode"] in (401, 403)
    # The certificate itself is refused (a CSR's extensions are never copied: 201 is fine).
    assert [r.status_code for r in statuses[:3]] == [403, 403, 403]
    assert "ERROR" not in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("where", ["authorization", "body", "x-other-header"])
def test_a_lone_surrogate_in_a_lambda_event_is_a_400(app, where):
    # JSON spells it ("\ud800"), json.loads makes it, and UTF-8 refuses to encode it.
    raw = api_event("rest_generate_cert.json")
    raw["requestContext"].pop("authorizer")
    if where == "body":
        raw["body"] = '{"nodeId": "n1\ud800"}'
    else:
        raw["headers"][where] = "Bearer a.b.c\ud800"
    response = app.handle(raw)
    assert response["statusCode"] == 400, response
    assert "is not valid Unicode" in json.loads(response["body"])["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate-cert", '{"nodeId": "n1", "csr": "\\ud800"}'),
        ("/generate-cert", '{"nodeId": "n1", "\\udfff": 1}'),
        ("/v1/nodes/n1/certificate", '{"dnsNames": ["\\ud800"]}'),
        ("/v1/nodes/n1/revoke-all", '{"reason": "\\ud800"}'),
        ("/v1/renew", '{"csr": "\\ud800"}'),
    ],
)
def test_a_lone_surrogate_in_a_json_body_is_a_400(env, path, body):
    # Valid UTF-8 and valid JSON, but the string it makes is not Unicode.
    response = env.client.post(path, content=body.encode(), headers=env.auth("root", admin=True))
    assert response.status_code == 400, response.text
    assert "lone surrogate" in response.json()["detail"]
