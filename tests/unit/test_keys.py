"""Key types, key generation, CSR building and the checks on client-supplied CSRs."""

from __future__ import annotations

import base64
import functools
import textwrap

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from nodecert.core.errors import CSRError, InvalidRequestError
from nodecert.core.identity import Identity
from nodecert.core.keys import (
    MAX_CSR_BYTES,
    KeyType,
    build_csr,
    generate_private_key,
    hash_for,
    key_type_of,
    private_key_pem,
    read_client_csr,
)
from tests.kit import self_signed

IDENTITY = Identity("alice", "node-1")
ORGANIZATION = "Acme Nodes"
TRUST_DOMAIN = "nodes.example"

EXPECTED = {
    KeyType.RSA_2048: ("RSA", 2048),
    KeyType.RSA_3072: ("RSA", 3072),
    KeyType.RSA_4096: ("RSA", 4096),
    KeyType.EC_P256: ("secp256r1", 256),
    KeyType.EC_P384: ("secp384r1", 384),
}


@functools.cache
def generated(key_type: KeyType) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    # RSA generation is slow on a busy machine; each type is generated once per run.
    return generate_private_key(key_type)


@functools.cache
def rsa_key(bits: int, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def csr_pem(key, *, subject: x509.Name | None = None, algorithm=None) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever")])
    )
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode("ascii")


def der_to_csr_pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


# KeyType and generation


@pytest.mark.parametrize("key_type", list(KeyType))
def test_every_key_type_generates_the_right_key(key_type):
    key = generated(key_type)
    family, size = EXPECTED[key_type]
    if key_type.is_rsa:
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == size
        assert key.public_key().public_numbers().e == 65537
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == family
        assert key.curve.key_size == size
    assert key_type_of(key.public_key()) is key_type


def test_key_types_are_the_documented_wire_values():
    assert [k.value for k in KeyType] == ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"]
    assert [k for k in KeyType if k.is_rsa] == [
        KeyType.RSA_2048,
        KeyType.RSA_3072,
        KeyType.RSA_4096,
    ]


@pytest.mark.parametrize("key_type", list(KeyType))
def test_key_type_parse_accepts_every_wire_value(key_type):
    assert KeyType.parse(key_type.value) is key_type


@pytest.mark.parametrize(
    "value",
    ["rsa-1024", "RSA-2048", "ec-p521", "ed25519", "", " rsa-2048", None, 2048, ["ec-p256"]],
)
def test_key_type_parse_errors_name_the_accepted_values(value):
    with pytest.raises(InvalidRequestError) as caught:
        KeyType.parse(value)
    assert not isinstance(caught.value, CSRError)
    detail = caught.value.detail
    assert detail.startswith("keyType: ")
    assert "rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384" in detail


def test_key_type_parse_does_not_echo_a_huge_value():
    with pytest.raises(InvalidRequestError) as caught:
        KeyType.parse("x" * 10_000)
    assert len(caught.value.detail) < 200


@pytest.mark.parametrize(
    ("key_type", "hash_name"),
    [
        (KeyType.RSA_2048, "sha256"),
        (KeyType.RSA_4096, "sha256"),
        (KeyType.EC_P256, "sha256"),
        (KeyType.EC_P384, "sha384"),
    ],
)
def test_hash_matches_the_key_strength(key_type, hash_name):
    assert hash_for(generated(key_type)).name == hash_name


def test_private_key_pem_is_unencrypted_pkcs8():
    pem = private_key_pem(generated(KeyType.EC_P256))
    # PKCS#8's label, as opposed to "EC PRIVATE KEY" (SEC 1) or "ENCRYPTED PRIVATE KEY".
    label = "PRIVATE KEY"
    assert pem.splitlines()[0] == f"-----BEGIN {label}-----"
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert loaded.public_key() == generated(KeyType.EC_P256).public_key()


# build_csr


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.EC_P256, KeyType.EC_P384])
def test_build_csr_carries_subject_and_spiffe_san(key_type):
    key = generated(key_type)
    csr = build_csr(key, IDENTITY, organization=ORGANIZATION, trust_domain=TRUST_DOMAIN)
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    assert csr.subject.rfc4514_string() == "CN=alice,OU=node-1,O=Acme Nodes"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://nodes.example/user/alice/node/node-1"
    ]
    assert csr.signature_hash_algorithm.name == hash_for(key).name


def test_built_csr_passes_the_client_csr_checks():
    key = generated(KeyType.EC_P384)
    csr = build_csr(key, IDENTITY, organization=ORGANIZATION, trust_domain=TRUST_DOMAIN)
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    assert read_client_csr(pem).key_type is KeyType.EC_P384


# read_client_csr: accepted


@pytest.mark.parametrize(
    ("make_key", "key_type"),
    [
        pytest.param(lambda: rsa_key(2048), KeyType.RSA_2048, id="rsa-2048"),
        pytest.param(lambda: generated(KeyType.RSA_3072), KeyType.RSA_3072, id="rsa-3072"),
        pytest.param(lambda: generated(KeyType.RSA_4096), KeyType.RSA_4096, id="rsa-4096"),
        pytest.param(lambda: rsa_key(2304), KeyType.RSA_2048, id="rsa-2304-non-standard"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), KeyType.EC_P256, id="p256"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), KeyType.EC_P384, id="p384"),
    ],
)
def test_valid_client_csr_passes_and_names_its_key_type(make_key, key_type):
    key = make_key()
    checked = read_client_csr(csr_pem(key))
    assert checked.key_type is key_type
    assert checked.request.public_key() == key.public_key()
    assert checked.public_key == key.public_key()  # The key as read, for the CA to certify.


def test_client_csr_subject_and_extensions_are_not_checked():
    # Only the public key is used; the identity comes from the token, so a CSR asking for
    # someone else's name is still a well-formed CSR (the CA ignores what it asks for).
    key = ec.generate_private_key(ec.SECP256R1())
    subject = Identity("mallory", "other-node").subject("Evil")
    assert read_client_csr(csr_pem(key, subject=subject)).key_type is KeyType.EC_P256


def test_client_csr_with_surrounding_whitespace_passes():
    pem = "\n\n  " + csr_pem(ec.generate_private_key(ec.SECP256R1())) + "\n\n"
    assert read_client_csr(pem).key_type is KeyType.EC_P256


def test_client_csr_with_crlf_line_endings_passes():
    pem = csr_pem(ec.generate_private_key(ec.SECP256R1())).replace("\n", "\r\n")
    assert read_client_csr(pem).key_type is KeyType.EC_P256


# read_client_csr: refused


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        pytest.param(lambda: rsa_key(1024), "RSA key of 1024 bits is too weak", id="rsa-1024"),
        pytest.param(lambda: rsa_key(2048, 3), "exponent must be 65537", id="rsa-exponent-3"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), "curve secp521r1", id="p521"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP224R1()), "curve secp224r1", id="p224"),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP256K1()), "curve secp256k1", id="secp256k1"
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.BrainpoolP256R1()),
            "curve brainpoolP256r1",
            id="brainpool",
        ),
        pytest.param(ed25519.Ed25519PrivateKey.generate, "Ed25519", id="ed25519"),
        pytest.param(ed448.Ed448PrivateKey.generate, "Ed448", id="ed448"),
    ],
)
def test_weak_or_unsupported_client_key_is_refused(make_key, message):
    with pytest.raises(CSRError) as caught:
        read_client_csr(csr_pem(make_key()))
    assert caught.value.detail.startswith("csr: ")
    assert message in caught.value.detail


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: rsa_key(2048), id="rsa"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ec"),
    ],
)
def test_client_csr_whose_signature_does_not_verify_is_refused(make_key):
    csr = x509.load_pem_x509_csr(csr_pem(make_key()).encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    # The signature BIT STRING is the last field of the CSR: flipping its final byte keeps
    # the DER well-formed but breaks proof of possession.
    der[-1] ^= 0x01
    with pytest.raises(CSRError, match="signature does not match"):
        read_client_csr(der_to_csr_pem(bytes(der)))


def test_client_csr_signed_by_another_key_is_refused():
    # The TBS (and so the public key) of one CSR with the signature of another key's CSR
    # over the same subject: a client claiming a key it does not hold. RSA-2048 signatures
    # have a fixed length, so the DER lengths stay valid after the swap.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "same")])
    victim = x509.load_pem_x509_csr(
        csr_pem(rsa_key(2048), subject=subject, algorithm=hashes.SHA256()).encode()
    )
    attacker = x509.load_pem_x509_csr(
        csr_pem(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            subject=subject,
            algorithm=hashes.SHA256(),
        ).encode()
    )
    victim_der = victim.public_bytes(serialization.Encoding.DER)
    assert victim_der.endswith(victim.signature)
    forged = victim_der[: -len(victim.signature)] + attacker.signature
    with pytest.raises(CSRError, match="signature does not match"):
        read_client_csr(der_to_csr_pem(forged))


def _certificate_pem() -> str:
    certificate = self_signed(ec.generate_private_key(ec.SECP256R1()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(None, "must be a PEM string", id="none"),
        pytest.param(b"-----BEGIN CERTIFICATE REQUEST-----", "must be a PEM string", id="bytes"),
        pytest.param(42, "must be a PEM string", id="int"),
        pytest.param({"pem": "x"}, "must be a PEM string", id="dict"),
        pytest.param("", "BEGIN CERTIFICATE REQUEST", id="empty"),
        pytest.param("hello, I am a CSR", "BEGIN CERTIFICATE REQUEST", id="not-pem"),
        pytest.param("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "BEGIN", id="bare-base64"),
        pytest.param(_certificate_pem(), "BEGIN CERTIFICATE REQUEST", id="certificate-pem"),
        pytest.param(
            private_key_pem(ec.generate_private_key(ec.SECP256R1())),
            "BEGIN CERTIFICATE REQUEST",
            id="private-key-pem",
        ),
        pytest.param(
            "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
            "not a parsable PKCS#10 request",
            id="header-with-junk",
        ),
        pytest.param(
            der_to_csr_pem(b"\x30\x03\x02\x01\x01"),
            "not a parsable PKCS#10 request",
            id="header-with-wrong-der",
        ),
    ],
)
def test_malformed_client_csr_is_refused(value, message):
    with pytest.raises(CSRError) as caught:
        read_client_csr(value)
    assert message in caught.value.detail


def test_client_csr_over_the_size_limit_is_refused_before_parsing():
    pem = csr_pem(ec.generate_private_key(ec.SECP256R1()))
    padded = pem + " " * (MAX_CSR_BYTES + 1 - len(pem))
    assert len(padded.encode()) == MAX_CSR_BYTES + 1
    with pytest.raises(CSRError, match=f"{MAX_CSR_BYTES + 1} bytes is over the {MAX_CSR_BYTES}"):
        read_client_csr(padded)


def test_client_csr_at_exactly_the_size_limit_passes():
    pem = csr_pem(ec.generate_private_key(ec.SECP256R1()))
    padded = pem + "\n" * (MAX_CSR_BYTES - len(pem))
    assert len(padded.encode()) == MAX_CSR_BYTES
    assert read_client_csr(padded).key_type is KeyType.EC_P256


def test_client_csr_size_is_counted_in_utf8_bytes():
    # 6,000 euro signs are 18,000 bytes: under the limit in characters, over it in bytes.
    with pytest.raises(CSRError, match="over the"):
        read_client_csr("\u20ac" * 6000)


def test_client_csr_with_lone_surrogates_is_a_csr_error():
    with pytest.raises(CSRError):
        read_client_csr("-----BEGIN CERTIFICATE REQUEST-----\n\udcff\n")


def test_a_csr_with_an_unknown_version_is_a_csr_error():
    # Found by Hypothesis: cryptography raises InvalidVersion, which is not a ValueError.
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    index = der.index(bytes([0x02, 0x01, 0x00]))  # INTEGER 0: the version, first in the TBS.
    der[index + 2] = 1
    pem = (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der)).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )
    with pytest.raises(CSRError, match="version 1 is not PKCS#10 v1"):
        read_client_csr(pem)
