"""Rotating the issuing subordinate of the two-tier ACM PCA shape, with an overlap.

Three CAs live in a moto server: an idle root and two subordinates under it, the old one
(issued the certificates nodes hold) and the new one (issues now). moto signs no CA
extensions, so their certificates are made here with the local CA's tooling and installed
with ``ImportCertificateAuthorityCertificate``, as an operator installs a subordinate's
certificate; moto then answers ``GetCertificateAuthorityCertificate`` with them over real
HTTP. The client certificates are signed with the subordinates' keys, exactly as PCA's
passthrough template makes them (``tests/kit.py``).

The authorizer is wired from settings as on Lambda (``build_decider``), fed recorded API
Gateway events: before the rotation's setting it refuses the old subordinate's
certificates (the outage this closes); with ``NODECERT_ACMPCA_RETIRING_ARNS`` it allows
both; with ``NODECERT_ACMPCA_RETIRED_ARNS`` (an emergency) it refuses the old ones while
renewal still accepts a genuine one and refuses one minted with the leaked key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nodecert.aws.authorizer import TargetSource, handle
from nodecert.backends.local.ca import LocalCA
from nodecert.backends.local.hierarchy import make_intermediate, make_root
from nodecert.backends.local.home import ca_name
from nodecert.bootstrap import build_decider
from nodecert.bootstrap.cas import open_ca as _ca
from nodecert.core.config import Settings
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.core.values import RevocationReason
from nodecert.issuing.issuers import IssuerState, issuer_statuses
from nodecert.store.sqlite.store import SQLiteStore
from tests.kit import TRUST_DOMAIN, event, record, sign

ORG = "nodecert"
REST = "authorizer_rest_request.json"
HTTP = "authorizer_http_v2.json"
PATH = TargetSource("path:nodeId")


def _moto_ca(pca: Any, kind: str, certificate: Any, chain: Any = None) -> str:
    arn: str = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"Organization": ORG, "CommonName": kind},
        },
        CertificateAuthorityType="ROOT" if chain is None else "SUBORDINATE",
    )["CertificateAuthorityArn"]
    extra = {} if chain is None else {"CertificateChain": _pem(chain)}
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=_pem(certificate), **extra
    )
    return arn


def _pem(certificate: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(certificate.public_bytes(Encoding.PEM))


@pytest.fixture(scope="module")
def pki(aws_env: None, moto_endpoint: str) -> dict[str, Any]:
    from nodecert.support.awsclients import make_client

    pca = make_client("acm-pca", region="eu-west-1", max_attempts=1, endpoint_url=moto_endpoint)
    now = datetime.now(UTC)
    root_key = generate_private_key(KeyType.EC_P256)
    root = make_root(root_key, ORG, now)
    cas: dict[str, Any] = {"root": _moto_ca(pca, "root", root)}
    for name in ("old", "new", "leaked"):
        key = generate_private_key(KeyType.EC_P256)
        subject = ca_name(ORG, f"issuer {name}")
        certificate = make_intermediate(
            key.public_key(), subject, root_key=root_key, root=root, now=now
        )
        cas[name] = _moto_ca(pca, name, certificate, root)
        # The subordinate's key signs client certificates as PCA would with it.
        cas[f"{name}-ca"] = LocalCA(
            key=key,
            certificate=certificate,
            organization=ORG,
            trust_domain=TRUST_DOMAIN,
            chain=(certificate, root),
        )
    cas["root-certificate"] = root
    return cas


@pytest.fixture
def env(tmp_path, moto_endpoint, pki, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return {
        "NODECERT_HOME": str(tmp_path),
        "NODECERT_CA": "acmpca",
        "NODECERT_ACMPCA_CA_ARN": pki["new"],
        "NODECERT_AWS_REGION": "eu-west-1",
        "NODECERT_TRUST_DOMAIN": TRUST_DOMAIN,
    }


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "nodecert.db")
    store.put_node("n1", "alice", at=datetime.now(UTC))
    yield store
    store.close()


def _issued(pki, store, name: str, *, recorded: bool = True):
    issued = sign(pki[f"{name}-ca"], "alice", "n1")
    if recorded:
        record(store, issued)
    return issued


def _authorize(settings: Settings, pem: str, shape: str = REST) -> tuple[bool, str]:
    out = handle(event(shape, pem=pem), build_decider(settings), PATH)
    if shape == HTTP:
        return out["isAuthorized"], out["context"].get("reason", "ok")
    allowed = out["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    return allowed, out["context"].get("reason", "ok")


def test_without_the_setting_the_old_subordinates_certificates_are_refused(env, pki, store):
    # What the two-tier shape did before: only the issuing subordinate was trusted.
    old = _issued(pki, store, "old")
    settings = Settings.from_env(env)
    assert _authorize(settings, old.pem) == (False, "untrusted_issuer")
    assert _authorize(settings, _issued(pki, store, "new").pem) == (True, "ok")


@pytest.mark.parametrize("shape", [REST, HTTP])
def test_during_the_overlap_both_subordinates_are_allowed(env, pki, store, shape):
    settings = Settings.from_env({**env, "NODECERT_ACMPCA_RETIRING_ARNS": pki["old"]})
    old, new = _issued(pki, store, "old"), _issued(pki, store, "new")
    assert _authorize(settings, old.pem, shape) == (True, "ok")
    assert _authorize(settings, new.pem, shape) == (True, "ok")
    # A subordinate of the same root that is not listed stays foreign, and so does a
    # certificate the ledger does not know.
    assert _authorize(settings, _issued(pki, store, "leaked").pem, shape) == (
        False,
        "untrusted_issuer",
    )
    unknown = _issued(pki, store, "old", recorded=False)
    assert _authorize(settings, unknown.pem, shape) == (False, "unknown_certificate")


def test_revoked_certificates_of_either_subordinate_are_refused(env, pki, store):
    settings = Settings.from_env({**env, "NODECERT_ACMPCA_RETIRING_ARNS": pki["old"]})
    for name in ("old", "new"):
        issued = _issued(pki, store, name)
        store.mark_revoked(
            issued.serial, reason=RevocationReason.KEY_COMPROMISE, at=datetime.now(UTC)
        )
        assert _authorize(settings, issued.pem) == (False, "revoked")


def test_renewal_agents_learn_the_old_subordinate_is_retiring(env, pki):
    settings = Settings.from_env({**env, "NODECERT_ACMPCA_RETIRING_ARNS": pki["old"]})
    ca = _ca(settings)
    states = {s.certificate: s.state for s in issuer_statuses(ca)}
    assert states == {
        pki["new-ca"].certificate: IssuerState.ACTIVE,
        pki["old-ca"].certificate: IssuerState.RETIRING,
        pki["root-certificate"]: IssuerState.ROOT,
    }


def test_emergency_refuses_the_retired_subordinate_but_genuine_certificates_renew(env, pki, store):
    settings = Settings.from_env({**env, "NODECERT_ACMPCA_RETIRED_ARNS": pki["leaked"]})
    genuine = _issued(pki, store, "leaked")
    forged = _issued(pki, store, "leaked", recorded=False)  # Minted with the leaked key.
    assert _authorize(settings, genuine.pem) == (False, "untrusted_issuer")
    assert _authorize(settings, forged.pem) == (False, "untrusted_issuer")
    decider = build_decider(settings)
    assert decider.decide_for_renewal(genuine.pem).allowed
    refused = decider.decide_for_renewal(forged.pem)
    assert (refused.allowed, refused.reason) == (False, "unknown_certificate")
    states = {s.certificate: s.state for s in issuer_statuses(_ca(settings))}
    assert states[pki["leaked-ca"].certificate] is IssuerState.RETIRED


def test_revocation_reaches_the_subordinate_that_issued(env, pki, store):
    from moto.backends import get_backend

    settings = Settings.from_env({**env, "NODECERT_ACMPCA_RETIRING_ARNS": pki["old"]})
    old = _issued(pki, store, "old")
    _ca(settings).revoke(
        old.certificate.serial_number, RevocationReason.KEY_COMPROMISE, issuer=pki["old"]
    )
    authorities = get_backend("acm-pca")["123456789012"]["eu-west-1"].certificate_authorities
    revoked = authorities[pki["old"]].revoked_certificates
    assert list(revoked) == [_colon_hex(old.certificate.serial_number)]
    assert not authorities[pki["new"]].revoked_certificates


def _colon_hex(serial: int) -> str:
    from nodecert.backends.acmpca.backend import pca_serial

    return pca_serial(serial)
