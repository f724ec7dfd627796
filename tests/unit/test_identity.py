from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from nodecert.core.errors import InvalidIdentifierError
from nodecert.core.identity import Identity, format_serial, parse_serial, validate_id


@pytest.mark.parametrize("value", ["a", "node-1", "A.b_c-9", "x" * 64, "..a", "user.name"])
def test_valid_ids_pass(value):
    assert validate_id(value, field="nodeId") == value


@pytest.mark.parametrize(
    "value", ["", "x" * 65, "x" * 128, "a b", "a/b", "ü", "a\n", ".", "..", "...", "a:b", "%2e"]
)
def test_invalid_ids_are_refused_with_the_field_name(value):
    with pytest.raises(InvalidIdentifierError, match="nodeId"):
        validate_id(value, field="nodeId")


@pytest.mark.parametrize("value", [None, 5, ["a"], {"a": 1}])
def test_non_string_ids_are_refused(value):
    with pytest.raises(InvalidIdentifierError, match="must be a string"):
        validate_id(value, field="userId")


def test_serials_round_trip_in_lower_hex():
    assert format_serial(0xABCDEF) == "abcdef"
    assert parse_serial("AB:CD:EF") == 0xABCDEF
    with pytest.raises(InvalidIdentifierError):
        parse_serial("xyz")
    with pytest.raises(InvalidIdentifierError):
        parse_serial("a" * 41)


def _certificate(subject: x509.Name, uris: list[str] | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if uris == []:
        # An empty subjectAltName (RFC 5280 forbids it, other tools still make one):
        # cryptography >= 51 refuses to build it, so it is written as raw DER.
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x00"),
            critical=False,
        )
    elif uris is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def test_identity_round_trips_through_a_certificate():
    identity = Identity("alice", "node-1")
    cert = _certificate(identity.subject("Acme"), [identity.spiffe_id("example.org")])
    assert Identity.from_certificate(cert, trust_domain="example.org") == identity
    assert cert.subject.rfc4514_string() == "CN=alice,OU=node-1,O=Acme"


def test_other_trust_domain_is_refused():
    identity = Identity("alice", "node-1")
    cert = _certificate(identity.subject("Acme"), [identity.spiffe_id("evil.org")])
    with pytest.raises(InvalidIdentifierError, match="trust domain"):
        Identity.from_certificate(cert, trust_domain="example.org")


def test_subject_must_agree_with_the_uri():
    subject = Identity("mallory", "node-1").subject("Acme")
    cert = _certificate(subject, [Identity("alice", "node-1").spiffe_id("example.org")])
    with pytest.raises(InvalidIdentifierError, match="do not agree"):
        Identity.from_certificate(cert)


@pytest.mark.parametrize(
    "uris",
    [
        None,
        [],
        ["spiffe://example.org/user/a/node/b", "spiffe://example.org/user/c/node/d"],
        ["spiffe://example.org/user/a"],
        ["spiffe://example.org/user/a/node/b/extra"],
    ],
)
def test_certificates_without_exactly_one_identity_uri_are_refused(uris):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a")])
    with pytest.raises(InvalidIdentifierError, match="certificate"):
        Identity.from_certificate(_certificate(subject, uris))


@pytest.mark.parametrize(
    "other",
    [
        # The scheme is case-insensitive (RFC 3986 section 3.1): a second SPIFFE ID, which
        # a SPIFFE library in front would read as the certificate's identity.
        "SPIFFE://example.org/user/mallory/node/b",
        # An X.509-SVID carries exactly one URI SAN (SPIFFE X509-SVID section 2).
        "https://example.org/user/mallory/node/b",
    ],
)
def test_a_second_uri_of_any_scheme_or_case_is_refused(other):
    identity = Identity("a", "b")
    for uris in (
        [other, identity.spiffe_id("example.org")],
        [identity.spiffe_id("example.org"), other],
    ):
        cert = _certificate(identity.subject("Acme"), uris)
        with pytest.raises(InvalidIdentifierError, match="exactly one URI"):
            Identity.from_certificate(cert)
