"""The node-side decision: one test per deny reason, with an in-memory store."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from nodecert.backends.local.ca import LocalCA
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.core.values import RevocationReason
from nodecert.nodeside.access import AccessDeniedError, DenyReason
from tests.kit import (
    ADMIN,
    TRUST_DOMAIN,
    Issued,
    admin_of,
    authority,
    decider,
    issue,
    new_ca,
    record,
    sign,
)


def test_the_right_certificate_for_the_right_node_is_allowed(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    decision = decider(ca, store).decide(cert.pem, "n1")
    assert decision.allowed
    assert decision.reason is None
    assert (decision.identity.user_id, decision.identity.node_id) == ("alice", "n1")
    assert decision.serial == cert.serial


def test_der_and_parsed_certificates_are_accepted_too(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    der = cert.certificate.public_bytes(serialization.Encoding.DER)
    assert decider(ca, store).decide(der, "n1").allowed
    assert decider(ca, store).decide(cert.certificate, "n1").allowed


def test_a_decision_costs_one_ledger_get_and_one_owner_lookup(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    decide = decider(ca, store)
    store.calls = 0
    assert decide.decide(cert.pem, "n1").allowed
    assert store.calls == 2


def test_wrong_node_is_denied(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    admin_of(auth).put_node(ADMIN, "n2", "alice")
    decision = decider(ca, store).decide(cert.pem, "n2")
    assert decision.reason is DenyReason.WRONG_NODE
    assert decision.identity.node_id == "n1"


def test_foreign_ca_is_denied_even_with_a_perfect_identity(ca, store, auth):
    issue(auth, "alice", "n1")
    foreign = new_ca()  # Same organization, same names, other key.
    forged = sign(foreign, "alice", "n1")
    record(store, forged)  # Even a ledger row does not help.
    assert decider(ca, store).decide(forged.pem, "n1").reason is DenyReason.UNTRUSTED_ISSUER


def test_expired_and_not_yet_valid_certificates_are_denied(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    later = cert.certificate.not_valid_after_utc + timedelta(seconds=1)
    earlier = cert.certificate.not_valid_before_utc - timedelta(seconds=1)
    assert decider(ca, store, clock=lambda: later).decide(cert.pem, "n1").reason is (
        DenyReason.EXPIRED
    )
    assert decider(ca, store, clock=lambda: earlier).decide(cert.pem, "n1").reason is (
        DenyReason.NOT_YET_VALID
    )


def test_renewal_grace_applies_only_to_renewal(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    later = cert.certificate.not_valid_after_utc + timedelta(minutes=5)
    decide = decider(ca, store, clock=lambda: later)
    assert decide.decide(cert.pem, "n1").reason is DenyReason.EXPIRED
    assert not decide.decide_for_renewal(cert.pem).allowed
    assert decide.decide_for_renewal(cert.pem, grace=timedelta(minutes=10)).allowed


def test_revocation_takes_effect_at_the_next_decision(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    decide = decider(ca, store)
    assert decide.decide(cert.pem, "n1").allowed
    admin_of(auth).revoke(ADMIN, cert.serial, RevocationReason.KEY_COMPROMISE)
    assert decide.decide(cert.pem, "n1").reason is DenyReason.REVOKED


def test_node_transfer_denies_even_before_the_revocation_sweep(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    store.owners["n1"] = store.owners["n1"].__class__("n1", "bob", datetime.now(UTC))
    assert decider(ca, store).decide(cert.pem, "n1").reason is DenyReason.NODE_NOT_OWNED


def test_node_transfer_through_the_authority_revokes(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    admin_of(auth).put_node(ADMIN, "n1", "bob")
    assert decider(ca, store).decide(cert.pem, "n1").reason is DenyReason.REVOKED


def test_deleted_node_is_denied(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    del store.owners["n1"]
    assert decider(ca, store).decide(cert.pem, "n1").reason is DenyReason.NODE_NOT_OWNED


def test_a_certificate_missing_from_the_ledger_is_denied(ca, store, auth):
    issue(auth, "alice", "n1")
    unrecorded = sign(ca, "alice", "n1")
    assert decider(ca, store).decide(unrecorded.pem, "n1").reason is (
        DenyReason.UNKNOWN_CERTIFICATE
    )


def test_another_trust_domain_has_no_identity(store):
    # The very same CA key and certificate, writing another trust domain's SAN URI.
    key = generate_private_key(KeyType.EC_P256)
    ours = LocalCA.generate(organization="nodecert", trust_domain="nodecert.local", key=key)
    other = LocalCA(
        key=key, certificate=ours.certificate, organization="nodecert", trust_domain="evil.org"
    )
    cert = sign(other, "alice", "n1")
    record(store, cert)
    assert decider(ours, store).decide(cert.pem, "n1").reason is DenyReason.NO_IDENTITY


def test_store_failure_fails_closed(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    store.down = True
    decision = decider(ca, store).decide(cert.pem, "n1")
    assert not decision.allowed
    assert decision.reason is DenyReason.STORE_UNAVAILABLE


@pytest.mark.parametrize("garbage", ["", "not a cert", b"\x30\x03\x02\x01\x01", "x" * 20000])
def test_garbage_is_malformed(ca, store, garbage):
    assert decider(ca, store).decide(garbage, "n1").reason is DenyReason.MALFORMED_CERTIFICATE


@pytest.mark.parametrize("target", ["", "a/b", "..", None])
def test_a_bad_target_is_denied(ca, store, auth, target):
    cert = issue(auth, "alice", "n1")
    assert decider(ca, store).decide(cert.pem, target).reason is DenyReason.INVALID_TARGET


def test_require_raises_with_the_decision(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    decide = decider(ca, store)
    assert decide.require(cert.pem, "n1").user_id == "alice"
    with pytest.raises(AccessDeniedError) as caught:
        decide.require(cert.pem, "n2")
    assert caught.value.decision.reason is DenyReason.WRONG_NODE
    assert caught.value.code == "access_denied"


def test_rsa_certificates_are_decided_the_same_way(store):
    rsa_ca = LocalCA.generate(
        organization="nodecert", trust_domain="nodecert.local", key_type=KeyType.RSA_2048
    )
    auth = authority(rsa_ca, store)
    cert = issue(auth, "alice", "n1")
    assert decider(rsa_ca, store).decide(cert.pem, "n1").allowed


def test_a_lazy_chain_is_fetched_on_the_first_decision_only(ca, store, auth):
    from nodecert.nodeside.access import AccessDecider
    from tests.kit import TRUST_DOMAIN

    calls = []

    def chain():
        calls.append(1)
        return ca.chain()

    lazy = AccessDecider.from_chain_source(
        chain, ledger=store, nodes=store, trust_domain=TRUST_DOMAIN
    )
    assert calls == []  # Building it asks the CA nothing (Lambda cold start).
    cert = issue(auth, "alice", "n1")
    assert lazy.decide(cert.pem, "n1").allowed
    assert lazy.decide(cert.pem, "n1").allowed
    assert calls == [1]


def test_a_failing_lazy_chain_denies_and_is_retried(ca, store, auth):
    from nodecert.core.errors import BackendUnavailableError
    from nodecert.nodeside.access import AccessDecider
    from tests.kit import TRUST_DOMAIN

    answers = [BackendUnavailableError("ca: down"), None]

    def chain():
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return ca.chain()

    lazy = AccessDecider.from_chain_source(
        chain, ledger=store, nodes=store, trust_domain=TRUST_DOMAIN
    )
    cert = issue(auth, "alice", "n1")
    first = lazy.decide(cert.pem, "n1")
    assert not first.allowed
    assert first.reason is DenyReason.UNTRUSTED_ISSUER
    assert lazy.decide(cert.pem, "n1").allowed


def _signed_by(ca: LocalCA, *, eku: list[x509.ObjectIdentifier] | None) -> Issued:
    # A certificate of the identity nodecert would issue but another profile, signed by
    # our CA's key: what a CA shared with another issuer, or a misconfigured template,
    # could produce.
    identity = Identity("alice", "n1")
    key = generate_private_key(KeyType.EC_P256)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(identity.subject("nodecert"))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(identity.san(TRUST_DOMAIN), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca._state.signer.key.public_key()),
            critical=False,
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return Issued(builder.sign(ca._state.signer.key, hashes.SHA256()), key)


@pytest.mark.parametrize(
    "eku",
    [None, [ExtendedKeyUsageOID.SERVER_AUTH], [ExtendedKeyUsageOID.CODE_SIGNING]],
    ids=["no EKU", "serverAuth only", "codeSigning"],
)
def test_a_certificate_without_client_auth_is_denied_even_in_the_ledger(ca, store, auth, eku):
    # RFC 5280 reads a missing EKU as "any purpose"; every nodecert client certificate
    # names clientAuth, so one that does not is not ours to accept.
    admin_of(auth).put_node(ADMIN, "n1", "alice")
    issued = _signed_by(ca, eku=eku)
    record(store, issued)
    decision = decider(ca, store).decide(issued.certificate, "n1")
    assert (decision.allowed, decision.reason) == (False, DenyReason.UNTRUSTED_ISSUER)
    # The same certificate with clientAuth is allowed: only the EKU differs.
    allowed = _signed_by(ca, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    record(store, allowed)
    assert decider(ca, store).decide(allowed.certificate, "n1").allowed


def test_a_denial_names_its_reason_once_when_the_detail_adds_nothing():
    from nodecert.nodeside.access import Decision

    revoked = AccessDeniedError(Decision.deny(DenyReason.REVOKED, "revoked"))
    assert revoked.detail == "certificate: revoked"
    wrong = AccessDeniedError(Decision.deny(DenyReason.WRONG_NODE, "issued for n1, not n2"))
    assert wrong.detail == "certificate: wrong_node: issued for n1, not n2"
