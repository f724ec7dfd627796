"""Proof-of-possession renewal: lineage, and every way a renewal token is refused."""

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.errors import AuthenticationError
from nodecert.core.values import RevocationReason
from nodecert.issuing.renewal import RenewalRequest, Renewer, mint_renewal_token, renewal_audience
from nodecert.nodeside.access import AccessDeniedError, DenyReason
from tests.kit import (
    ADMIN,
    TRUST_DOMAIN,
    admin_of,
    decider,
    issue,
    new_ca,
    sign,
)

AUDIENCE = renewal_audience(TRUST_DOMAIN)


def renewer(ca, store, auth, **kwargs):
    return Renewer(
        authority=auth, decider=decider(ca, store), replay=store, audience=AUDIENCE, **kwargs
    )


def renew(renewer_, token):
    return renewer_.renew(RenewalRequest(token=token, request_id="renew-1"))


def test_renewal_issues_the_same_identity_and_records_the_lineage(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    issued = renew(
        renewer(ca, store, auth), mint_renewal_token(cert.certificate, cert.key, audience=AUDIENCE)
    )
    record = issued.record
    assert (record.user_id, record.node_id) == ("alice", "n1")
    assert record.renewed_from == cert.serial
    assert record.serial != cert.serial
    assert store.get(record.serial).renewed_from == cert.serial
    assert issued.private_key_pem is not None  # No CSR sent: a fresh server-side key.


def test_a_replayed_token_is_refused(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    token = mint_renewal_token(cert.certificate, cert.key, audience=AUDIENCE)
    r = renewer(ca, store, auth)
    renew(r, token)
    with pytest.raises(AuthenticationError, match="already used"):
        renew(r, token)


def test_a_revoked_certificate_cannot_renew(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    admin_of(auth).revoke(ADMIN, cert.serial, RevocationReason.KEY_COMPROMISE)
    token = mint_renewal_token(cert.certificate, cert.key, audience=AUDIENCE)
    with pytest.raises(AccessDeniedError) as caught:
        renew(renewer(ca, store, auth), token)
    assert caught.value.decision.reason is DenyReason.REVOKED


def test_a_transferred_node_cannot_renew(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    admin_of(auth).put_node(ADMIN, "n1", "bob")
    token = mint_renewal_token(cert.certificate, cert.key, audience=AUDIENCE)
    with pytest.raises(AccessDeniedError):
        renew(renewer(ca, store, auth), token)


def test_a_foreign_certificate_cannot_renew(ca, store, auth):
    issue(auth, "alice", "n1")
    forged = sign(new_ca(), "alice", "n1")
    token = mint_renewal_token(forged.certificate, forged.key, audience=AUDIENCE)
    with pytest.raises(AccessDeniedError) as caught:
        renew(renewer(ca, store, auth), token)
    assert caught.value.decision.reason is DenyReason.UNTRUSTED_ISSUER


def test_expiry_grace_is_off_by_default_and_configurable(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    later = cert.certificate.not_valid_after_utc + timedelta(minutes=1)
    token = mint_renewal_token(cert.certificate, cert.key, audience=AUDIENCE, now=later)
    strict = Renewer(
        authority=auth,
        decider=decider(ca, store, clock=lambda: later),
        replay=store,
        audience=AUDIENCE,
        clock=lambda: later,
    )
    with pytest.raises(AccessDeniedError) as caught:
        renew(strict, token)
    assert caught.value.decision.reason is DenyReason.EXPIRED
    lenient = Renewer(
        authority=auth,
        decider=decider(ca, store, clock=lambda: later),
        replay=store,
        audience=AUDIENCE,
        grace=timedelta(minutes=5),
        clock=lambda: later,
    )
    assert renew(lenient, token).record.renewed_from == cert.serial


def _token(cert, key, *, headers=None, alg="ES256", **claims):
    now = int(datetime.now(UTC).timestamp())
    body = {"aud": AUDIENCE, "iat": now, "exp": now + 60, "jti": "j1", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    der = cert.public_bytes(serialization.Encoding.DER)
    head = {"x5c": [base64.b64encode(der).decode()]} if headers is None else headers
    return jwt.encode(body, key, algorithm=alg, headers=head)


@dataclass(frozen=True)
class _Now:
    offset: int


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"aud": "https://other.example"}, "audience"),
        ({"jti": None}, "jti"),
        ({"exp": None}, "'iat' and 'exp'"),
        # PyJWT's JSON parser accepts these; an infinite exp must not mean "never expires"
        # (and NaN used to crash the replay guard's expiry with a ValueError).
        ({"exp": float("nan")}, "NaN, not JSON"),
        ({"exp": float("inf")}, "Infinity, not JSON"),
        ({"iat": True}, "'iat' must be a number"),
        # Too large for a float: used to crash with an OverflowError (a 500).
        ({"exp": 10**400}, "'exp' is out of range"),
        ({"iat": -1}, "'iat' is out of range"),
        ({"jti": 5}, "'jti' must be a string"),
        ({"aud": {"a": 1}}, "'aud' must be a string or a list"),
        # Times relative to when the test runs (_Now), not to when it was collected: on a
        # loaded machine a long suite reaches this test minutes later.
        ({"exp": _Now(3600)}, "over 5 minutes"),
        ({"iat": _Now(-400), "exp": _Now(-200)}, "expired"),
        ({"iat": _Now(600), "exp": _Now(700)}, "not valid yet"),
    ],
)
def test_bad_claims_are_refused(ca, store, auth, claims, match):
    now = int(datetime.now(UTC).timestamp())
    claims = {k: now + v.offset if isinstance(v, _Now) else v for k, v in claims.items()}
    cert = issue(auth, "alice", "n1")
    with pytest.raises(AuthenticationError, match=match):
        renew(renewer(ca, store, auth), _token(cert.certificate, cert.key, **claims))


def test_a_token_signed_by_another_key_is_refused(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    thief = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthenticationError, match="signature"):
        renew(renewer(ca, store, auth), _token(cert.certificate, thief))
    assert store.used == {}  # A forger cannot burn the jti.


@pytest.mark.parametrize("headers", [{}, {"x5c": "abc"}, {"x5c": ["!!"]}, {"x5c": ["AAAA"]}])
def test_a_missing_or_broken_x5c_is_refused(ca, store, auth, headers):
    cert = issue(auth, "alice", "n1")
    with pytest.raises(AuthenticationError, match="x5c"):
        renew(renewer(ca, store, auth), _token(cert.certificate, cert.key, headers=headers))


def test_hs256_and_none_are_refused(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    der = cert.certificate.public_bytes(serialization.Encoding.DER)
    head = {"x5c": [base64.b64encode(der).decode()]}
    token = jwt.encode({"aud": AUDIENCE}, "secret-secret-secret-secret-32b!", "HS256", head)
    with pytest.raises(AuthenticationError, match="algorithm"):
        renew(renewer(ca, store, auth), token)
    with pytest.raises(AuthenticationError, match="well-formed"):
        renew(renewer(ca, store, auth), "not.a.jwt")


def test_an_rsa_algorithm_with_an_ec_certificate_is_refused(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    token = _token(cert.certificate, cert.key)
    header, payload, signature = token.split(".")
    forged_header = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(header).replace(b'"ES256"', b'"RS256"')
    ).decode()
    with pytest.raises(AuthenticationError, match="does not fit"):
        renew(renewer(ca, store, auth), f"{forged_header}.{payload}.{signature}")


# id-ecPublicKey (1.2.840.10045.2.1) as DER, and an OID of the same length no library knows.
_EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
_UNKNOWN_KEY_OID = bytes.fromhex("06072a8648ce3d0209")


def x5c_with_unknown_key_algorithm(cert):
    """The certificate's DER with its SubjectPublicKeyInfo algorithm swapped for an unknown one."""
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(_EC_PUBLIC_KEY_OID) == 1
    return base64.b64encode(der.replace(_EC_PUBLIC_KEY_OID, _UNKNOWN_KEY_OID)).decode()


def test_an_x5c_certificate_with_an_unknown_key_algorithm_is_refused(ca, store, auth):
    # Issue 12: this raised cryptography's UnsupportedAlgorithm uncaught (an anonymous 500).
    cert = issue(auth, "alice", "n1")
    head = {"x5c": [x5c_with_unknown_key_algorithm(cert.certificate)]}
    token = _token(cert.certificate, cert.key, headers=head)
    with pytest.raises(AuthenticationError, match="x5c"):
        renew(renewer(ca, store, auth), token)
    assert store.used == {}
