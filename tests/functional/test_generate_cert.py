"""POST /generate-cert over the ASGI app: the happy paths and every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType

from ..conftest import Env


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str = "anything") -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://nodecert.local/user/bob/node/n9")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_default_issue_returns_rsa_2048_key_and_identity(env: Env) -> None:
    env.add_node("n1", "alice")
    response = env.client.post("/generate-cert", json={"nodeId": "n1"}, headers=env.auth("alice"))
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) >= {
        "certificate",
        "certificateChain",
        "privateKey",
        "serialNumber",
        "notBefore",
        "notAfter",
        "userId",
        "nodeId",
    }
    assert (body["userId"], body["nodeId"], body["keyType"]) == ("alice", "n1", "rsa-2048")
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    key = serialization.load_pem_private_key(body["privateKey"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.public_key() == key.public_key()
    assert Identity.from_certificate(cert, trust_domain="nodecert.local") == Identity("alice", "n1")
    assert body["serialNumber"] == format(cert.serial_number, "x")
    assert response.headers["location"] == f"/v1/certificates/{body['serialNumber']}"
    # The ledger has the row, with the certificate's fingerprint.
    row = env.service.authority.ledger.get(body["serialNumber"])
    assert row is not None
    assert row.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    # Default validity: 7 days (plus the one-minute backdate).
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days == 7


@pytest.mark.parametrize(
    ("key_type", "check"),
    [
        (
            "ec-p256",
            lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1",
        ),
        (
            "ec-p384",
            lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp384r1",
        ),
        ("rsa-3072", lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 3072),
    ],
)
def test_other_key_types(env: Env, key_type: str, check) -> None:  # type: ignore[no-untyped-def]
    env.add_node("n1", "alice")
    body = env.issue("alice", "n1", keyType=key_type)
    key = serialization.load_pem_private_key(body["privateKey"].encode(), password=None)  # type: ignore[union-attr]
    assert check(key)
    assert body["keyType"] == key_type


def test_validity_days_within_the_cap(env: Env) -> None:
    env.add_node("n1", "alice")
    body = env.issue("alice", "n1", keyType="ec-p256", validityDays=30)
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())  # type: ignore[union-attr]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


def test_client_csr_keeps_the_key_and_ignores_what_the_csr_asks_for(env: Env) -> None:
    env.add_node("n1", "alice")
    key = ec.generate_private_key(ec.SECP256R1())
    body = env.issue("alice", "n1", csr=_csr(key, cn="mallory"))
    assert "privateKey" not in body
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())  # type: ignore[union-attr]
    assert cert.public_key() == key.public_key()
    assert Identity.from_certificate(cert) == Identity("alice", "n1")
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    assert body["keyType"] == KeyType.EC_P256


def test_body_user_id_must_be_the_token_subject(env: Env) -> None:
    env.add_node("n1", "alice")
    same = env.client.post(
        "/generate-cert",
        json={"nodeId": "n1", "userId": "alice", "keyType": "ec-p256"},
        headers=env.auth("alice"),
    )
    assert same.status_code == 201
    other = env.client.post(
        "/generate-cert", json={"nodeId": "n1", "userId": "bob"}, headers=env.auth("alice")
    )
    assert other.status_code == 403
    assert other.json()["code"] == "forbidden"


@pytest.mark.parametrize(("node", "owner"), [("n1", "bob"), ("ghost", None)])
def test_someone_elses_or_unknown_node_is_403_with_the_same_message(
    env: Env, node: str, owner: str | None
) -> None:
    if owner:
        env.add_node(node, owner)
    response = env.client.post("/generate-cert", json={"nodeId": node}, headers=env.auth("alice"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"nodeId: {node!r} is not one of your nodes"
    assert env.service.authority.ledger.find(user_id="alice") == []


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256(claims: dict[str, object], kid: str, secret: bytes) -> str:
    # PyJWT refuses to HMAC-sign with a PEM key (that refusal is the defence we test on
    # the verifying side), so the token is put together by hand.
    signing_input = f"{_b64({'alg': 'HS256', 'kid': kid})}.{_b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _forged_tokens(env: Env) -> dict[str, str]:
    good = env.token("alice")
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert env.service.dev_issuer is not None
    kid = env.service.dev_issuer.kid
    return {
        "garbage": "not-a-token",
        "alg none": f"{_b64({'alg': 'none', 'kid': kid})}.{payload}.",
        "tampered payload": f"{header}.{_b64({**claims, 'sub': 'bob'})}.{signature}",
        "stranger's key": jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": kid}),
        "HS256 with public key": _hs256(claims, kid, env.service.dev_issuer.public_pem()),
        "expired": env.token("alice", lifetime_s=-3600),
        "truncated": good[:-10],
    }


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "alg none",
        "tampered payload",
        "stranger's key",
        "HS256 with public key",
        "expired",
        "truncated",
    ],
)
def test_forged_tokens_are_401_and_issue_nothing(env: Env, case: str) -> None:
    env.add_node("n1", "alice")
    token = _forged_tokens(env)[case]
    response = env.client.post(
        "/generate-cert", json={"nodeId": "n1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, case
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert token not in response.text or len(token) < 12
    assert env.service.authority.ledger.find(node_id="n1") == []


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_missing_or_malformed_authorization_is_401(env: Env, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = env.client.post("/generate-cert", json={"nodeId": "n1"}, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b"", "JSON object is required"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "JSON"),
        (b'{"nodeID": "n1"}', "unknown field"),
        (b'{"userId": "alice"}', "nodeId: required"),
        (b'{"nodeId": "../etc"}', "nodeId"),
        (b'{"nodeId": 5}', "must be a string"),
        (b'{"nodeId": "' + b"x" * 65 + b'"}', "not a valid id"),
        (b'{"nodeId": "n1", "keyType": "dsa-1024"}', "keyType"),
        (b'{"nodeId": "n1", "keyType": 3}', "keyType"),
        (b'{"nodeId": "n1", "validityDays": 31}', "validityDays"),
        (b'{"nodeId": "n1", "validityDays": 0}', "validityDays"),
        (b'{"nodeId": "n1", "validityDays": "7"}', "validityDays"),
        (b'{"nodeId": "n1", "validityDays": true}', "validityDays"),
        (b'{"nodeId": "n1", "csr": "hello"}', "csr"),
        (b'{"nodeId": "n1", "csr": 12}', "csr"),
        # A duplicate key is refused, not resolved: a proxy or WAF that reads the first
        # value and nodecert the last would disagree on what was asked.
        (b'{"nodeId": "n1", "nodeId": "n2"}', "duplicate field 'nodeId'"),
        (b'{"nodeId": "n1", "keyType": "ec-p256", "keyType": "rsa-4096"}', "duplicate"),
        # RFC 8259 section 8.1: JSON on the wire is UTF-8, not UTF-16/32 guessed from a BOM.
        ('{"nodeId": "n1"}'.encode("utf-16"), "UTF-8"),
        ('{"nodeId": "n1"}'.encode("utf-32"), "UTF-8"),
        (b'{"nodeId": "n1", "validityDays": NaN}', "not valid JSON"),
        (b'{"nodeId": "n1", "validityDays": -Infinity}', "not valid JSON"),
    ],
)
def test_bad_input_is_400_problem(env: Env, body: bytes, fragment: str) -> None:
    env.add_node("n1", "alice")
    response = env.client.post(
        "/generate-cert",
        content=body,
        headers={**env.auth("alice"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["status"] == 400
    assert fragment in problem["detail"]
    assert problem["code"] in ("invalid_request", "invalid_identifier", "invalid_csr")
    assert env.service.authority.ledger.find(node_id="n1") == []


def _weak_csrs() -> dict[str, str]:
    ok_key = ec.generate_private_key(ec.SECP256R1())
    good = x509.load_pem_x509_csr(_csr(ok_key).encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # Corrupt the signature.
    bad_signature = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    return {
        "rsa-1024": _csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        "p-521": _csr(ec.generate_private_key(ec.SECP521R1())),
        "bad signature": bad_signature.decode(),
        "certificate instead": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "oversize": "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 20000,
    }


@pytest.mark.parametrize(
    "case", ["rsa-1024", "p-521", "bad signature", "certificate instead", "oversize"]
)
def test_weak_or_broken_csr_is_400(env: Env, case: str) -> None:
    env.add_node("n1", "alice")
    response = env.client.post(
        "/generate-cert",
        json={"nodeId": "n1", "csr": _weak_csrs()[case]},
        headers=env.auth("alice"),
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_csr"


def test_oversize_body_is_413_by_content_length(env: Env) -> None:
    response = env.client.post(
        "/generate-cert",
        content=b"{" + b" " * (70 * 1024) + b"}",
        headers={**env.auth("alice"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_oversize_chunked_body_is_413_without_reading_it_all(env: Env) -> None:
    sent = 0

    def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        for _ in range(100):
            sent += 8192
            yield b" " * 8192

    response = env.client.post(
        "/generate-cert",
        content=chunks(),
        headers={**env.auth("alice"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
