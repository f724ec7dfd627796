"""ACMPCABackend during a rotation's overlap, against botocore's Stubber.

The issuing CA (``ca_arn``), the retiring CAs (``retiring_ca_arns``: trusted until their
certificates expire) and the retired ones (``retired_ca_arns``: an emergency) give the
:class:`IssuerSet` that the access decision, the authorizer and ``GET /v1/ca/issuers``
read. The Stubber checks every request against the ACM PCA service model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nodecert.backends.acmpca.backend import ACMPCABackend
from nodecert.core.errors import BackendUnavailableError, ConfigurationError
from nodecert.core.values import RevocationReason
from nodecert.issuing.issuers import IssuerState, issuer_statuses
from tests.fakes import FakeTime

PREFIX = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
NEW = PREFIX + "11111111-1111-1111-1111-111111111111"
OLD = PREFIX + "22222222-2222-2222-2222-222222222222"
LEAKED = PREFIX + "33333333-3333-3333-3333-333333333333"
NOW = datetime.now(UTC)


def _ca(name: str, key, issuer: x509.Certificate | None = None, issuer_key=None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


@pytest.fixture(scope="module")
def pki():
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("root", "a", "b", "c")}
    root = _ca("root", keys["root"])
    return {
        "root": root,
        NEW: _ca("issuer 2", keys["a"], root, keys["root"]),
        OLD: _ca("issuer 1", keys["b"], root, keys["root"]),
        LEAKED: _ca("issuer 0", keys["c"], root, keys["root"]),
    }


@pytest.fixture
def client():
    return boto3.client(
        "acm-pca", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def backend(client, clock: FakeTime | None = None, **kwargs) -> ACMPCABackend:
    clock = clock or FakeTime()
    return ACMPCABackend(
        client,
        ca_arn=NEW,
        organization="Example",
        trust_domain="example.test",
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
        **kwargs,
    )


def chain_answer(stub, pki, arn: str) -> None:
    stub.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": _pem(pki[arn]), "CertificateChain": _pem(pki["root"])},
        {"CertificateAuthorityArn": arn},
    )


# Configuration: the failures first.


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        pytest.param({"retiring_ca_arns": [NEW]}, "listed twice", id="issuing-and-retiring"),
        pytest.param({"retired_ca_arns": [OLD, OLD]}, "listed twice", id="retired-twice"),
        pytest.param(
            {"retiring_ca_arns": [OLD], "retired_ca_arns": [OLD]}, "listed twice", id="both"
        ),
        pytest.param(
            {"retiring_ca_arns": [OLD.replace("arn:aws:", "arn:aws-cn:")]},
            "not in the partition",
            id="other-partition",
        ),
        pytest.param({"retired_ca_arns": ["issuer-1"]}, "not an ARN", id="no-arn"),
    ],
)
def test_leaving_cas_that_cannot_be_honoured_are_refused(client, kwargs, shown):
    with pytest.raises(ConfigurationError, match=shown):
        backend(client, **kwargs)


def test_a_retiring_ca_without_its_chain_stops_the_start_check(client, stub):
    stub.add_client_error(
        "get_certificate_authority_certificate", service_error_code="InvalidStateException"
    )
    with pytest.raises(ConfigurationError, match=f"NODECERT_ACMPCA_RETIRING_ARNS: {OLD}"):
        backend(client, retiring_ca_arns=[OLD]).check()


# What the relying parties get.


def test_without_leaving_cas_the_issuer_set_is_the_chain_of_the_issuing_ca(client, stub, pki):
    chain_answer(stub, pki, NEW)
    ca = backend(client)
    issuers = ca.issuer_set()
    assert issuers.roots == (pki["root"],)
    assert issuers.intermediates == (pki[NEW],)
    assert issuers.retired == ()
    assert issuers.issuing == (pki[NEW],)
    # Built once: the access decision rebuilds its verifiers only for a new object.
    assert ca.issuer_set() is issuers
    states = {s.certificate: s.state for s in issuer_statuses(ca)}
    assert states == {pki[NEW]: IssuerState.ACTIVE, pki["root"]: IssuerState.ROOT}


def test_the_overlap_trusts_the_retiring_ca_and_lists_it_as_retiring(client, stub, pki):
    chain_answer(stub, pki, NEW)
    chain_answer(stub, pki, OLD)
    ca = backend(client, retiring_ca_arns=[OLD])
    issuers = ca.issuer_set()
    assert issuers.roots == (pki["root"],)
    assert issuers.intermediates == (pki[NEW], pki[OLD])
    assert issuers.retired == ()
    # GET /v1/ca: the issuing CA, the retiring one, the root last.
    assert list(ca.chain()) == [pki[NEW], pki[OLD], pki["root"]]
    states = {s.certificate: s.state for s in issuer_statuses(ca)}
    assert states == {
        pki[NEW]: IssuerState.ACTIVE,
        pki[OLD]: IssuerState.RETIRING,
        pki["root"]: IssuerState.ROOT,
    }


def test_an_emergency_lists_the_retired_ca_apart_and_not_in_get_ca(client, stub, pki):
    chain_answer(stub, pki, NEW)
    chain_answer(stub, pki, LEAKED)
    ca = backend(client, retired_ca_arns=[LEAKED])
    issuers = ca.issuer_set()
    assert issuers.intermediates == (pki[NEW],)
    assert issuers.retired == (pki[LEAKED],)
    assert list(ca.chain()) == [pki[NEW], pki["root"]]
    states = {s.certificate: s.state for s in issuer_statuses(ca)}
    assert states[pki[LEAKED]] is IssuerState.RETIRED


def test_a_retired_ca_that_is_gone_leaves_its_certificates_without_a_chain(client, stub, pki):
    chain_answer(stub, pki, NEW)
    stub.add_client_error(
        "get_certificate_authority_certificate",
        service_error_code="ResourceNotFoundException",
        expected_params={"CertificateAuthorityArn": LEAKED},
    )
    issuers = backend(client, retired_ca_arns=[LEAKED]).issuer_set()
    assert issuers.retired == ()
    assert issuers.intermediates == (pki[NEW],)


def test_a_retiring_ca_that_pca_cannot_give_now_is_an_outage_asked_again(client, stub, pki):
    # Asked again a few seconds later: until then the same answer stands, without a call
    # (GET /v1/ca/issuers is public; a flood of it must not become one of PCA calls).
    clock = FakeTime()
    chain_answer(stub, pki, NEW)
    stub.add_client_error(
        "get_certificate_authority_certificate",
        service_error_code="ResourceNotFoundException",
        expected_params={"CertificateAuthorityArn": OLD},
    )
    ca = backend(client, clock, retiring_ca_arns=[OLD])
    with pytest.raises(BackendUnavailableError) as first:
        ca.issuer_set()
    chain_answer(stub, pki, OLD)  # What PCA would answer now.
    clock.sleep(4.9)
    with pytest.raises(BackendUnavailableError) as held:
        ca.issuer_set()
    assert held.value.detail == first.value.detail
    assert held.value.retry_after == first.value.retry_after
    with pytest.raises(BackendUnavailableError):
        ca.chain()  # GET /v1/ca too.
    clock.sleep(0.2)
    assert ca.issuer_set().intermediates == (pki[NEW], pki[OLD])


# Revocation goes to the CA that issued.


def test_revocation_goes_to_the_issuer_the_ledger_recorded(client, stub):
    stub.add_response(
        "revoke_certificate",
        {},
        {
            "CertificateAuthorityArn": OLD,
            "CertificateSerial": "0a:bc",
            "RevocationReason": "KEY_COMPROMISE",
        },
    )
    ca = backend(client, retiring_ca_arns=[OLD])
    ca.revoke(0xABC, RevocationReason.KEY_COMPROMISE, issuer=OLD)


def test_revocation_without_a_recorded_issuer_asks_the_leaving_cas_after_the_issuing_one(
    client, stub
):
    stub.add_client_error(
        "revoke_certificate",
        service_error_code="ResourceNotFoundException",
        expected_params={
            "CertificateAuthorityArn": NEW,
            "CertificateSerial": "0a:bc",
            "RevocationReason": "SUPERSEDED",
        },
    )
    stub.add_response(
        "revoke_certificate",
        {},
        {
            "CertificateAuthorityArn": OLD,
            "CertificateSerial": "0a:bc",
            "RevocationReason": "SUPERSEDED",
        },
    )
    backend(client, retiring_ca_arns=[OLD]).revoke(0xABC, RevocationReason.SUPERSEDED)


def test_the_issuers_listing_is_worked_out_once_per_issuer_set(client, stub, pki, monkeypatch):
    # GET /v1/ca/issuers checks signatures (which root issued which CA): once for an issuer
    # set and chain, not on every request of a public route; a new set is worked out anew.
    from nodecert.issuing import issuers as module

    chain_answer(stub, pki, NEW)
    chain_answer(stub, pki, OLD)
    ca = backend(client, retiring_ca_arns=[OLD])
    checks = []
    real = module.issued_by
    monkeypatch.setattr(
        module,
        "issued_by",
        lambda c, r: checks.append(c) or real(c, r),  # type: ignore[func-returns-value]
    )
    first = issuer_statuses(ca)
    made = len(checks)
    assert made > 0
    assert issuer_statuses(ca) == first
    assert len(checks) == made
    other = backend(client, retiring_ca_arns=[OLD])  # Another issuer set: its own answer.
    other._authorities._chains = dict(ca._authorities._chains)
    assert issuer_statuses(other) == first
    assert len(checks) == 2 * made
