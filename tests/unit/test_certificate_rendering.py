"""``pem_and_fingerprint``: the PEM and the SHA-256 fingerprint pyca would give, from one
encoding of the certificate."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.core.keys import KeyType, PrivateKey, fingerprint, generate_private_key
from nodecert.issuing.values import pem, pem_and_fingerprint
from tests.kit import self_signed


@functools.cache
def _key(key_type: KeyType) -> PrivateKey:
    return generate_private_key(key_type)


def _certificate(
    key_type: KeyType, common_name: str, sans: list[str], serial: int
) -> x509.Certificate:
    return self_signed(
        _key(key_type),
        common_name,
        serial=serial,
        start=datetime(2026, 1, 1, tzinfo=UTC),
        dns_names=tuple(sans),
    )


@settings(max_examples=60, deadline=None)
@given(
    key_type=st.sampled_from([KeyType.EC_P256, KeyType.EC_P384, KeyType.RSA_2048]),
    # Lengths that end the base64 on every offset of a 64-character line.
    common_name=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=64
    ),
    sans=st.lists(st.from_regex(r"[a-z]{1,20}\.example", fullmatch=True), max_size=5),
    serial=st.integers(min_value=1, max_value=2**159 - 1),
)
def test_the_pem_and_fingerprint_are_pycas(
    key_type: KeyType, common_name: str, sans: list[str], serial: int
) -> None:
    certificate = _certificate(key_type, common_name, sans, serial)
    text, digest = pem_and_fingerprint(certificate)
    assert text == pem(certificate)
    assert digest == fingerprint(certificate) == certificate.fingerprint(hashes.SHA256()).hex()
    # And the DER read back out of the PEM is the certificate's own.
    assert x509.load_pem_x509_certificate(text.encode()).public_bytes(
        serialization.Encoding.DER
    ) == certificate.public_bytes(serialization.Encoding.DER)
