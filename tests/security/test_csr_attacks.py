"""CSR attacks: whatever a client CSR asks for, the certificate has exactly our profile."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nodecert.core.identity import Identity

from ..conftest import Env

KEY = ec.generate_private_key(ec.SECP256R1())


def _csr(*extensions: tuple[x509.ExtensionType, bool], cn: str = "bob") -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "n-of-bob"),
            ]
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


ATTACKS = {
    "CA:TRUE": _csr((x509.BasicConstraints(ca=True, path_length=None), True)),
    "serverAuth": _csr(
        (
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
            ),
            False,
        )
    ),
    "extra SANs": _csr(
        (
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("bank.example"),
                    x509.UniformResourceIdentifier(
                        "spiffe://nodecert.local/user/bob/node/n-of-bob"
                    ),
                    x509.RFC822Name("root@example.org"),
                ]
            ),
            False,
        )
    ),
    "keyCertSign": _csr(
        (
            x509.KeyUsage(True, True, True, True, True, True, True, False, False),
            True,
        )
    ),
    "huge extension": _csr(
        (
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x04" * 9000
            ),
            False,
        )
    ),
    "other identity in subject": _csr(cn="root"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_issued_certificate_has_exactly_our_profile(env: Env, attack: str) -> None:
    env.add_node("n1", "alice")
    response = env.client.post(
        "/generate-cert", json={"nodeId": "n1", "csr": ATTACKS[attack]}, headers=env.auth("alice")
    )
    assert response.status_code == 201, response.text
    cert = x509.load_pem_x509_certificate(response.json()["certificate"].encode())
    assert Identity.from_certificate(cert) == Identity("alice", "n1")
    assert cert.subject.rfc4514_string() == "CN=alice,OU=n1,O=nodecert"
    assert {type(e.value) for e in cert.extensions} == {
        x509.BasicConstraints,
        x509.KeyUsage,
        x509.ExtendedKeyUsage,
        x509.SubjectKeyIdentifier,
        x509.AuthorityKeyIdentifier,
        x509.SubjectAlternativeName,
    }
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not (usage.key_cert_sign or usage.crl_sign or usage.content_commitment)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [
        x509.UniformResourceIdentifier("spiffe://nodecert.local/user/alice/node/n1")
    ]
    assert cert.public_key() == KEY.public_key()


def test_csr_over_the_size_limit_is_refused_before_parsing(env: Env) -> None:
    env.add_node("n1", "alice")
    huge = _csr(
        (
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.99999.2"), b"\x04" * 20000
            ),
            False,
        )
    )
    response = env.client.post(
        "/generate-cert", json={"nodeId": "n1", "csr": huge}, headers=env.auth("alice")
    )
    assert response.status_code == 400
    assert "byte limit" in response.json()["detail"]
