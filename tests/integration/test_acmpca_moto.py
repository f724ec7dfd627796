"""ACMPCABackend against a moto server: the wiring, over real HTTP.

moto's ACM PCA signs with the CA key and copies the CSR's subject and SAN, but ignores
Validity, SigningAlgorithm, ApiPassthrough, templates' extensions and IdempotencyToken, and
never throttles or answers RequestInProgressException. So these tests check only what it
models: the calls, the signature, the chain and revocation being accepted. The rest is in
``tests/unit/test_acmpca_stubber.py`` and the opt-in ``test_aws_smoke.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from nodecert.backends.acmpca.backend import ACMPCABackend
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import CertificateStatus, Principal, RevocationReason, SigningRequest
from nodecert.issuing.administration import Administration
from nodecert.issuing.authority import Authority, IssueRequest
from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

ORG = "Example"
TRUST_DOMAIN = "example.test"
ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"


def create_active_ca(client) -> str:
    """Create a root CA in moto and install its self-signed certificate (as in the console)."""
    arn = client.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"Organization": ORG, "CommonName": "nodecert test root"},
        },
        CertificateAuthorityType="ROOT",
        UsageMode="SHORT_LIVED_CERTIFICATE",
    )["CertificateAuthorityArn"]
    csr = client.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    certificate_arn = client.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Type": "YEARS", "Value": 10},
    )["CertificateArn"]
    certificate = client.get_certificate(
        CertificateAuthorityArn=arn, CertificateArn=certificate_arn
    )["Certificate"]
    client.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=certificate.encode()
    )
    return arn


@pytest.fixture(scope="module")
def pca(aws_env, moto_endpoint):
    from nodecert.support.awsclients import make_client

    return make_client("acm-pca", region="eu-west-1", max_attempts=1, endpoint_url=moto_endpoint)


@pytest.fixture(scope="module")
def ca_arn(pca):
    return create_active_ca(pca)


@pytest.fixture
def backend(pca, ca_arn):
    return ACMPCABackend(pca, ca_arn=ca_arn, organization=ORG, trust_domain=TRUST_DOMAIN)


@pytest.fixture(scope="module")
def rsa_key():
    return generate_private_key(KeyType.RSA_2048)


def test_issue_returns_a_certificate_signed_by_the_ca_with_its_chain(backend, rsa_key):
    identity = Identity(user_id="alice", node_id="node-1")
    now = datetime.now(UTC)
    request = SigningRequest(
        csr=build_csr(rsa_key, identity, organization=ORG, trust_domain=TRUST_DOMAIN),
        identity=identity,
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=7),
        request_id="req-moto-1",
    )

    signed = backend.issue(request)

    (ca_certificate,) = backend.chain()
    signed.certificate.verify_directly_issued_by(ca_certificate)
    assert signed.chain == (ca_certificate,)
    assert signed.certificate.public_key() == rsa_key.public_key()
    assert Identity.from_certificate(signed.certificate, trust_domain=TRUST_DOMAIN) == identity
    assert ca_certificate.subject == ca_certificate.issuer
    assert ca_certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_revoke_is_accepted_and_repeatable(backend, pca, ca_arn):
    # What moto models here is the wire: the request as botocore serialized it, and an
    # answer without an error, twice. It keeps no revocation list to read back.
    sent = []

    def record(request, **_):
        sent.append(json.loads(request.body))

    pca.meta.events.register("before-send.acm-pca.RevokeCertificate", record)
    try:
        backend.revoke(0x1234ABCD, RevocationReason.KEY_COMPROMISE)
        backend.revoke(0x1234ABCD, RevocationReason.KEY_COMPROMISE)
    finally:
        pca.meta.events.unregister("before-send.acm-pca.RevokeCertificate", record)
    expected = {
        "CertificateAuthorityArn": ca_arn,
        "CertificateSerial": "12:34:ab:cd",
        "RevocationReason": "KEY_COMPROMISE",
    }
    assert sent == [expected, expected]


def test_an_unknown_ca_is_backend_unavailable_with_a_clear_message(pca, ca_arn, rsa_key):
    missing = ca_arn[:-12] + "000000000000"
    backend = ACMPCABackend(pca, ca_arn=missing, organization=ORG, trust_domain=TRUST_DOMAIN)
    with pytest.raises(BackendUnavailableError, match="not found"):
        backend.chain()


def test_the_authority_issues_records_and_revokes_through_pca_and_dynamodb(
    backend, ca_arn, aws_client, unique
):
    dynamodb = aws_client("dynamodb")
    from nodecert.store.dynamodb.outbox import DynamoDBOutbox

    nodes_table, certificates_table = f"nodes-{unique}", f"certificates-{unique}"
    create_tables(
        dynamodb,
        nodes_table=nodes_table,
        certificates_table=certificates_table,
        limits_table=f"limits-{unique}",
        outbox_table=f"outbox-{unique}",
    )
    store = DynamoDBStore(dynamodb, nodes_table=nodes_table, certificates_table=certificates_table)
    outbox = DynamoDBOutbox(
        dynamodb,
        certificates_table=certificates_table,
        outbox_table=f"outbox-{unique}",
        limits_table=f"limits-{unique}",
    )
    authority = Authority(
        ca=backend,
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(mode=OwnershipMode.REGISTRY, nodes=store),
        validity=ValidityPolicy(),
        organization=ORG,
        trust_domain=TRUST_DOMAIN,
    )
    administration = Administration(
        ca=backend,
        ledger=store,
        nodes=store,
        ownership=authority.ownership,
        outbox=outbox,
        audit=outbox,
    )
    admin = Principal(user_id="root", is_admin=True)
    alice = Principal(user_id="alice")
    administration.put_node(admin, "node-7", "alice")

    issued = authority.issue(alice, IssueRequest(node_id="node-7", request_id="req-moto-2"))

    assert issued.private_key_pem is not None
    assert issued.chain_pem == authority.ca_chain_pem()
    assert [r.serial for r in administration.list_certificates(alice)] == [issued.record.serial]
    # The ledger names the CA that signed, and revocation goes there (moto accepts it).
    assert store.get(issued.record.serial).issuer == ca_arn
    revoked = administration.revoke(alice, issued.record.serial, RevocationReason.SUPERSEDED)
    assert revoked.status is CertificateStatus.REVOKED
    assert administration.finish_revocations() == 0  # PCA took it (moto accepts it).
