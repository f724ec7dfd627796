"""Hostile input to every parser of untrusted data: never a 5xx (issue 12).

``POST /v1/renew`` parses a JWT, its ``x5c`` certificate (DER from the caller), and a
body with a CSR; ``POST /v1/authorize`` a URL-escaped PEM certificate, a node id and a
JSON body; ``POST /generate-cert`` a JSON body with a CSR. Hypothesis feeds each one
mutations of *valid* inputs (bit flips, truncations, swapped OIDs, an unknown public-key
algorithm), so that the input gets past the first check and reaches the deeper parsers,
and plain junk. Whatever it sends, the answer is a 4xx problem document, never a 5xx.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import urllib.parse
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.http.app import create_app
from nodecert.issuing.renewal import renewal_audience
from tests.kit import TRUST_DOMAIN, issue

_HOME = Path(tempfile.mkdtemp(prefix="nodecert-hostile-"))
_SERVICE = build_service(Settings(home=_HOME, trust_domain=TRUST_DOMAIN))
_CERT = issue(_SERVICE.authority, "alice", "n1", admin=_SERVICE.administration)
_DER = _CERT.certificate.public_bytes(serialization.Encoding.DER)
_KEY = generate_private_key(KeyType.EC_P256)
_CSR = build_csr(_KEY, Identity("alice", "n1"), organization="o", trust_domain=TRUST_DOMAIN)
_CSR_DER = _CSR.public_bytes(serialization.Encoding.DER)
_AUDIENCE = renewal_audience(TRUST_DOMAIN)
assert _SERVICE.dev_issuer is not None
_TOKEN = _SERVICE.dev_issuer.mint("alice", lifetime_s=24 * 3600)
_CLIENT = TestClient(create_app(_SERVICE), client=("127.0.0.1", 40000))
_EC_OID = bytes.fromhex("06072a8648ce3d0201")
_ES256 = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)

HYPOTHESIS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes changed, a cut, or an OID swapped for an unknown one."""
    kind = draw(st.sampled_from(["flip", "cut", "oid", "junk", "same"]))
    if kind == "junk":
        return draw(st.binary(max_size=600))
    if kind == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "oid" and _EC_OID in data:
        last = draw(st.integers(0, 255))
        return data.replace(_EC_OID, _EC_OID[:-1] + bytes([last]))
    out = bytearray(data)
    for _ in range(draw(st.integers(1 if kind == "flip" else 0, 4))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


def _pem(der: bytes, label: str) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


def _assert_4xx(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["code"]


@HYPOTHESIS
@given(
    der=mutated(_DER),
    alg=st.sampled_from(["ES256", "ES384", "RS256", "PS256", "none", "HS256"]),
    claims=st.dictionaries(st.sampled_from(["aud", "iat", "exp", "jti", "sub"]), json_values),
    body=st.one_of(st.none(), st.dictionaries(st.sampled_from(["csr", "keyType"]), json_values)),
)
def test_renew_never_answers_5xx(der, alg, claims, body):
    now = int(time.time())
    payload = {"aud": _AUDIENCE, "iat": now, "exp": now + 60, "jti": "j", **claims}
    header = {"x5c": [base64.b64encode(der).decode()], "alg": alg}
    signing = jwt.utils.base64url_encode(json.dumps(header).encode()).decode()
    signing += "." + jwt.utils.base64url_encode(json.dumps(payload, default=str).encode()).decode()
    # Signed with the real key (ES256), whatever ``alg`` claims: a mutated certificate
    # whose key survived then gets past the signature to the certificate checks.
    signature = _ES256.sign(signing.encode(), _CERT.key)
    token = signing + "." + jwt.utils.base64url_encode(signature).decode()
    response = _CLIENT.post(
        "/v1/renew",
        headers={"Authorization": f"Bearer {token}"},
        content=b"" if body is None else json.dumps(body, default=str).encode(),
    )
    _assert_4xx(response)


@HYPOTHESIS
@given(
    der=mutated(_DER),
    escape=st.booleans(),
    node=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    body=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["certificate", "nodeId"]), json_values)
    ),
    in_body=st.booleans(),
)
def test_authorize_never_answers_5xx(der, escape, node, body, in_body):
    pem = _pem(der, "CERTIFICATE")
    headers = {}
    if in_body:
        content = json.dumps({"certificate": pem, "nodeId": node}).encode()
    else:
        headers = {"X-Client-Cert": urllib.parse.quote(pem) if escape else pem.replace("\n", " ")}
        headers["X-Nodecert-Node"] = node
        content = b"" if body is None else json.dumps(body, default=str).encode()
    _assert_4xx(_CLIENT.post("/v1/authorize", headers=headers, content=content))


@HYPOTHESIS
@given(
    csr=mutated(_CSR_DER),
    as_pem=st.booleans(),
    extra=st.dictionaries(
        st.sampled_from(["keyType", "validityDays", "dnsNames", "profile", "nodeId"]), json_values
    ),
)
def test_generate_cert_never_answers_5xx(csr, as_pem, extra):
    text = _pem(csr, "CERTIFICATE REQUEST") if as_pem else csr.decode("latin-1")
    body = {"nodeId": "n1", "csr": text, **extra}
    response = _CLIENT.post(
        "/generate-cert",
        headers={"Authorization": f"Bearer {_TOKEN}"},
        content=json.dumps(body, default=str).encode(),
    )
    _assert_4xx(response)


@pytest.fixture(scope="module", autouse=True)
def _close() -> object:
    yield None
    _SERVICE.close()
