"""Opt-in smoke test against a real AWS Private CA: what moto and the Stubber cannot show.

It issues one short certificate (one PCA certificate fee) and revokes it. Run it with::

    NODECERT_AWS_SMOKE_CA_ARN=arn:aws:acm-pca:...:certificate-authority/... \\
    AWS_PROFILE=... .venv/bin/python -m pytest -m aws tests/integration/test_aws_smoke.py

The CA must be ACTIVE; a short-lived-mode CA is the cheapest. Credentials come from the
usual AWS chain. ``NODECERT_AWS_SMOKE_REGION`` overrides the region in the ARN.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from nodecert.backends.acmpca.backend import ACMPCABackend
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.values import RevocationReason, SigningRequest
from nodecert.support.awsclients import make_client

CA_ARN = os.environ.get("NODECERT_AWS_SMOKE_CA_ARN", "")
TRUST_DOMAIN = "smoke.nodecert.test"
ORG = "nodecert smoke test"

pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(
        not CA_ARN, reason="real AWS smoke test: set NODECERT_AWS_SMOKE_CA_ARN to run it"
    ),
]


@pytest.fixture(scope="module")
def backend():
    region = os.environ.get("NODECERT_AWS_SMOKE_REGION") or CA_ARN.split(":")[3]
    client = make_client("acm-pca", region=region, max_attempts=1)
    return ACMPCABackend(client, ca_arn=CA_ARN, organization=ORG, trust_domain=TRUST_DOMAIN)


def test_a_real_pca_honours_validity_passthrough_template_and_idempotency(backend):
    key = generate_private_key(KeyType.EC_P256)
    identity = Identity(user_id="smoke-user", node_id="smoke-node")
    # A CSR that names someone else: the identity must come from ApiPassthrough.
    csr = build_csr(
        key, Identity(user_id="mallory", node_id="elsewhere"), organization="x", trust_domain="x"
    )
    now = datetime.now(UTC).replace(microsecond=0)
    request = SigningRequest(
        csr=csr,
        identity=identity,
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=1),
        request_id=f"smoke-{uuid.uuid4()}",
    )

    signed = backend.issue(request)
    certificate = signed.certificate

    assert certificate.not_valid_before_utc == request.not_before
    assert certificate.not_valid_after_utc == request.not_after
    assert Identity.from_certificate(certificate, trust_domain=TRUST_DOMAIN) == identity
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert not basic.value.ca
    certificate.verify_directly_issued_by(signed.chain[0])
    assert next(iter(backend.chain())) == signed.chain[0]
    # The node side (authorizer, renewal) walks an RFC 5280 client chain, which moto's
    # certificates fail (no AKI, no EKU): a real PCA certificate must pass it.
    chain = list(backend.chain())
    verifier = PolicyBuilder().store(Store([chain[-1]])).build_client_verifier()
    verifier.verify(certificate, chain[:-1])

    # The same request within five minutes: PCA's IdempotencyToken gives the same certificate.
    again = backend.issue(request)
    assert again.certificate.serial_number == certificate.serial_number

    backend.revoke(certificate.serial_number, RevocationReason.CESSATION_OF_OPERATION)
    backend.revoke(certificate.serial_number, RevocationReason.CESSATION_OF_OPERATION)
