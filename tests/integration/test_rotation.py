"""Rotating the issuing intermediate (issue 19): planned and emergency, end to end.

One service keeps running while ``nodecert ca rotate`` (the CLI, in this process, like an
operator's shell beside it) replaces its issuing CA: it issues from the new one at once,
the old one's certificates keep working during the overlap (``GET /v1/ca``, real mutual-TLS
handshakes, the access decision, revocation), and after an emergency rotation the old
one's certificates are refused at once while each genuine one renews onto the new
intermediate by proof of possession; a certificate minted with the leaked key renews not.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.backends.hierarchy import load_key
from nodecert.backends.local_files import key_id
from nodecert.bootstrap import build_decider
from nodecert.cli import main
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.values import SigningRequest
from nodecert.issuing.renewal import mint_renewal_token, renewal_audience

from ..conftest import Env, make_settings
from ..tls import connect, mtls_server
from .test_mtls import pkilint


@pytest.fixture
def home(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's home, as the CLI's NODECERT_HOME."""
    home = env.service.settings.home
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NODECERT_HOME", str(home))
    return home


def _leaf(issued: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(str(issued["certificate"]).encode())


def _handshake(env: Env, issued: dict[str, Any], tmp_path: Path, trust: bytes) -> bytes:
    with mtls_server(trust, tmp_path) as (port, server_ca, seen):
        try:
            return connect(
                port,
                server_ca,
                str(issued["certificate"]) + str(issued["certificateChain"]),
                str(issued["privateKey"]),
                tmp_path,
            )
        finally:
            seen.done.wait(10)


def _renew(env: Env, certificate: x509.Certificate, key: Any) -> Any:
    audience = renewal_audience(env.service.settings.trust_domain)
    token = mint_renewal_token(certificate, key, audience=audience)
    return env.client.post("/v1/renew", headers={"Authorization": f"Bearer {token}"})


def _key(issued: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(str(issued["privateKey"]).encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _issuers(env: Env) -> dict[str, str]:
    reply = env.client.get("/v1/ca/issuers")
    assert reply.status_code == 200
    return {i["keyId"]: i["status"] for i in reply.json()["issuers"]}


def test_rotation_refuses_a_one_tier_home_and_a_missing_root_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodecert.bootstrap import build_service

    from .test_two_tier import _one_tier_home

    _one_tier_home(tmp_path / "old")
    build_service(make_settings(tmp_path / "old")).close()
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "old"))
    before = (tmp_path / "old" / "ca" / "ca.crt").read_bytes()
    assert main(["ca", "rotate"]) == 1
    assert "--new-root" in capsys.readouterr().err
    assert (tmp_path / "old" / "ca" / "ca.crt").read_bytes() == before
    # Two tiers with the root key taken offline: rotate needs it given.
    new = tmp_path / "new"
    monkeypatch.setenv("NODECERT_HOME", str(new))
    assert main(["ca", "init", "--root-key-out", str(tmp_path / "root.key")]) == 0
    build_service(make_settings(new)).close()
    before = (new / "ca" / "ca.crt").read_bytes()
    assert main(["ca", "rotate"]) == 1
    assert "--root-key" in capsys.readouterr().err
    assert (new / "ca" / "ca.crt").read_bytes() == before
    assert not (new / "ca" / "retired").exists() or not any((new / "ca" / "retired").iterdir())
    assert main(["ca", "rotate", "--root-key", str(tmp_path / "root.key")]) == 0
    assert (new / "ca" / "ca.crt").read_bytes() != before


def test_a_planned_rotation_issues_from_the_new_intermediate_and_keeps_the_old_valid(
    env: Env, home: Path, tmp_path: Path
) -> None:
    env.add_node("n1", "alice")
    old = env.issue("alice", "n1", keyType="ec-p256")
    old_issuer = env.service.authority.ca.chain()[0]
    assert main(["ca", "rotate"]) == 0
    # The same running service issues from the new intermediate at once.
    new = env.issue("alice", "n1", keyType="ec-p256")
    chain = x509.load_pem_x509_certificates(env.client.get("/v1/ca").content)
    new_issuer, root = chain[0], chain[-1]
    assert new_issuer != old_issuer and old_issuer in chain and len(chain) == 3
    assert _leaf(new).issuer == new_issuer.subject and _leaf(old).issuer == old_issuer.subject
    assert x509.load_pem_x509_certificates(str(new["certificateChain"]).encode()) == [
        new_issuer,
        root,
    ]
    assert x509.load_pem_x509_certificates(env.client.get("/v1/ca/roots").content) == [root]
    assert _issuers(env) == {
        key_id(new_issuer): "active",
        key_id(old_issuer): "retiring",
        key_id(root): "root",
    }
    for certificate in (new_issuer, old_issuer, root):
        assert (
            pkilint(
                "lint_pkix_cert", certificate.public_bytes(serialization.Encoding.DER), tmp_path
            )
            == ""
        )
    # During the overlap both work: the decision (in the service, and from the home's files
    # alone, as an authorizer has it), and real handshakes against GET /v1/ca and the root.
    outside = build_decider(make_settings(home))
    for issued in (old, new):
        assert env.service.decider.decide(_leaf(issued), "n1").allowed
        assert outside.decide(_leaf(issued), "n1").allowed
        assert _handshake(env, issued, tmp_path, env.client.get("/v1/ca").content) == b"hello"
        assert _handshake(env, issued, tmp_path, root.public_bytes(serialization.Encoding.PEM))
    # Revocation under both issuers.
    admin = env.auth("root", admin=True)
    for issued in (old, new):
        serial = str(issued["serialNumber"])
        reply = env.client.post(f"/v1/certificates/{serial}/revoke", headers=admin, json={})
        assert reply.status_code == 200
        assert env.service.decider.decide(_leaf(issued), "n1").reason.value == "revoked"  # type: ignore[union-attr]
        assert outside.decide(_leaf(issued), "n1").reason.value == "revoked"  # type: ignore[union-attr]
    # One CRL per issuer, each signed by its issuer and listing the revoked certificate.
    for issuer, issued in ((new_issuer, new), (old_issuer, old)):
        reply = env.client.get("/v1/crl", params={"issuer": key_id(issuer)})
        assert reply.status_code == 200, reply.text
        crl = x509.load_der_x509_crl(reply.content)
        assert crl.issuer == issuer.subject
        assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        serial = _leaf(issued).serial_number
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert x509.load_der_x509_crl(env.client.get("/v1/crl").content).issuer == new_issuer.subject


def test_an_unknown_or_malformed_crl_issuer_is_a_4xx(env: Env) -> None:
    for value, status in (("00" * 20, 404), ("zz", 400), ("a" * 5000, 400), ("", 400)):
        reply = env.client.get("/v1/crl", params={"issuer": value})
        assert reply.status_code == status, (value, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")


def test_an_emergency_rotation_refuses_the_old_at_once_and_renews_the_genuine(
    env: Env, home: Path, tmp_path: Path
) -> None:
    env.add_node("n1", "alice")
    genuine = env.issue("alice", "n1", keyType="ec-p256")
    leaked_issuer = env.service.authority.ca.chain()[0]
    leaked_key = load_key(home / "ca" / "ca.key", None)
    outside = build_decider(make_settings(home))
    assert main(["ca", "rotate", "--retire-now"]) == 0
    # The attacker's certificate: our profile and identity, signed with the leaked key.
    forged_key = generate_private_key(KeyType.EC_P256)
    forger = type(env.service.authority.ca)(
        key=leaked_key,
        certificate=leaked_issuer,
        organization="nodecert",
        trust_domain="nodecert.local",
        chain=(leaked_issuer, env.service.authority.ca.root),
    )
    now = datetime.now(UTC)
    identity = Identity("alice", "n1")
    forged = forger.issue(
        SigningRequest(
            csr=build_csr(
                forged_key, identity, organization="nodecert", trust_domain="nodecert.local"
            ),
            identity=identity,
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=1),
            request_id="forged",
        )
    ).certificate
    # Refused at once, wherever the decision runs, and at TLS against the new GET /v1/ca.
    for decider in (env.service.decider, outside):
        for certificate in (_leaf(genuine), forged):
            decision = decider.decide(certificate, "n1")
            assert not decision.allowed and decision.reason.value == "untrusted_issuer"  # type: ignore[union-attr]
    assert (
        key_id(leaked_issuer) not in _issuers(env)
        or _issuers(env)[key_id(leaked_issuer)] == "retired"
    )
    published = env.client.get("/v1/ca").content
    assert leaked_issuer not in x509.load_pem_x509_certificates(published)
    # A TLS server trusting the new GET /v1/ca no longer holds the retired intermediate.
    # (One trusting the root alone still accepts a client that sends it: there, only the
    # access decision refuses. docs/security.md says so.)
    alone = {**genuine, "certificateChain": ""}
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _handshake(env, alone, tmp_path, published)
    # The forged certificate cannot renew: no ledger knows it.
    refused = _renew(env, forged, forged_key)
    assert refused.status_code == 403, refused.text
    assert "not in the ledger" in refused.json()["detail"]
    # The genuine one renews onto the new intermediate by proof of possession.
    renewed = _renew(env, _leaf(genuine), _key(genuine))
    assert renewed.status_code == 201, renewed.text
    successor = renewed.json()
    new_issuer = x509.load_pem_x509_certificates(published)[0]
    assert _leaf(successor).issuer == new_issuer.subject
    assert env.service.decider.decide(_leaf(successor), "n1").allowed
    assert outside.decide(_leaf(successor), "n1").allowed
    if not successor.get("privateKey"):
        successor["privateKey"] = genuine["privateKey"]  # The renewal kept the key.
    assert _handshake(env, successor, tmp_path, published) == b"hello"
