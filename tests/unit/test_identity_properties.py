"""Property tests: the identity schema round-trips, the id check is exact, and the client-CSR
parser only ever fails with CSRError."""

from __future__ import annotations

import base64
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.core.errors import CSRError, InvalidIdentifierError
from nodecert.core.identity import ID_PATTERN, Identity, validate_id
from nodecert.core.keys import KeyType, read_client_csr

# Small example counts keep the suite fast; no example database is written to the tree.
PROPERTY = settings(max_examples=75, deadline=None, database=None)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
TRUST_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-"

SIGNER = ec.generate_private_key(ec.SECP256R1())
START = datetime(2025, 1, 1, tzinfo=UTC)


def not_only_dots(value: str) -> bool:
    return set(value) != {"."}


def ids(max_size: int = 128) -> st.SearchStrategy[str]:
    return st.text(alphabet=ALPHABET, min_size=1, max_size=max_size).filter(not_only_dots)


trust_domains = st.text(alphabet=TRUST_ALPHABET, min_size=1, max_size=60).filter(not_only_dots)
organizations = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=64
)


def certificate_for(identity: Identity, organization: str, trust_domain: str) -> x509.Certificate:
    certificate = (
        x509.CertificateBuilder()
        .subject_name(identity.subject(organization))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(SIGNER.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(START + timedelta(days=7))
        .add_extension(identity.san(trust_domain), critical=False)
        .sign(SIGNER, hashes.SHA256())
    )
    # Through DER and back, as a gateway or node would see it.
    return x509.load_der_x509_certificate(certificate.public_bytes(serialization.Encoding.DER))


@PROPERTY
@given(user_id=ids(64), node_id=ids(), organization=organizations, trust_domain=trust_domains)
def test_any_valid_identity_round_trips_through_a_certificate(
    user_id, node_id, organization, trust_domain
):
    identity = Identity(user_id=user_id, node_id=node_id)
    certificate = certificate_for(identity, organization, trust_domain)
    assert Identity.from_certificate(certificate, trust_domain=trust_domain) == identity
    assert Identity.from_certificate(certificate) == identity
    uris = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{trust_domain}/user/{user_id}/node/{node_id}"
    ]


@PROPERTY
@given(identity=st.builds(Identity, user_id=ids(64), node_id=ids()), other=trust_domains)
def test_identity_from_another_trust_domain_is_refused(identity, other):
    certificate = certificate_for(identity, "Acme", "nodes.example")
    if other == "nodes.example":
        return
    with pytest.raises(InvalidIdentifierError, match="trust domain"):
        Identity.from_certificate(certificate, trust_domain=other)


def test_longest_valid_ids_fit_in_a_certificate():
    identity = Identity(user_id="u" * 64, node_id="n" * 64)
    certificate = certificate_for(identity, "Acme", "nodes.example")
    assert Identity.from_certificate(certificate) == identity


@pytest.mark.parametrize("field", ["user_id", "node_id"])
def test_ids_longer_than_a_cn_are_refused_up_front(field):
    values = {"user_id": "u", "node_id": "n", field: "x" * 65}
    with pytest.raises(InvalidIdentifierError, match="1-64 characters"):
        Identity(**values)


@PROPERTY
@given(value=ids())
def test_every_id_from_the_alphabet_is_accepted(value):
    assert validate_id(value, field="nodeId") == value


def _with_a_foreign_character() -> st.SearchStrategy[str]:
    foreign = st.characters(exclude_characters=ALPHABET)
    around = st.text(alphabet=ALPHABET, max_size=20)
    return st.tuples(around, foreign, around).map("".join)


invalid_ids = st.one_of(
    _with_a_foreign_character(),
    st.text(alphabet=ALPHABET, min_size=129, max_size=300),
    st.integers(min_value=1, max_value=128).map(lambda n: "." * n),
    st.just(""),
    st.text().filter(lambda s: not ID_PATTERN.fullmatch(s)),
)


@PROPERTY
@given(value=invalid_ids)
def test_every_string_outside_the_alphabet_is_refused(value):
    with pytest.raises(InvalidIdentifierError) as caught:
        validate_id(value, field="userId")
    assert caught.value.detail.startswith("userId: ")
    assert len(caught.value.detail) < 300  # Huge values are cut short.


@PROPERTY
@given(value=invalid_ids, good=ids())
def test_identity_refuses_any_invalid_part(value, good):
    with pytest.raises(InvalidIdentifierError, match="userId"):
        Identity(user_id=value, node_id=good)
    with pytest.raises(InvalidIdentifierError, match="nodeId"):
        Identity(user_id=good, node_id=value)


# read_client_csr never fails with anything but CSRError


def _pem(der: bytes, label: str = "CERTIFICATE REQUEST") -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _csr_der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(Identity("alice", "node-1").subject("Acme"))
        .add_extension(Identity("alice", "node-1").san("nodes.example"), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


SEED_CSRS = [
    _csr_der(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    _csr_der(ec.generate_private_key(ec.SECP256R1())),
]


@st.composite
def mutated_csr(draw: st.DrawFn) -> bytes:
    der = bytearray(draw(st.sampled_from(SEED_CSRS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(der) - 1))
        der[position] = draw(st.integers(min_value=0, max_value=255))
    if draw(st.booleans()):
        der = der[: draw(st.integers(min_value=0, max_value=len(der)))]
    return bytes(der)


client_inputs = st.one_of(
    st.binary(max_size=2048).map(_pem),
    mutated_csr().map(_pem),
    st.binary(max_size=512),
    st.binary(max_size=512).map(lambda b: b.decode("latin-1")),
    st.binary(max_size=512).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(max_size=512),
    st.text(max_size=256).map(lambda t: f"-----BEGIN CERTIFICATE REQUEST-----\n{t}"),
)


@PROPERTY
@given(value=client_inputs)
def test_client_csr_parser_only_raises_csr_error(value):
    try:
        checked = read_client_csr(value)
    except CSRError as exc:
        detail = exc.detail
    else:
        # Whatever got through is a CSR with a verified signature and an accepted key.
        assert checked.request.is_signature_valid
        assert isinstance(checked.key_type, KeyType)
        return
    assert detail.startswith("csr: ")


def test_unmutated_seed_csrs_are_accepted():
    # Guards the property above: its seeds must be good CSRs to begin with.
    assert [read_client_csr(_pem(der)).key_type for der in SEED_CSRS] == [
        KeyType.RSA_2048,
        KeyType.EC_P256,
    ]
