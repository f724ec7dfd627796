"""PKCS#12 output of ``request`` and ``renew`` (``--p12 FILE``): key, certificate and chain.

Browsers, the macOS and Windows key stores, Java and wallet apps import one file. It is
encrypted with AES-256-CBC under a PBKDF2-SHA256 key, MAC'd with HMAC-SHA256 (PBES2, RFC
8018), as OpenSSL 3 writes it by default; the password comes from ``--p12-password-file``
(its first line) or, on a terminal, from a prompt. It never reaches a log, an error
message or the process arguments.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from nodecert.cli.common import CLIError
from nodecert.client._files import read_small

__all__ = ["p12_bytes", "p12_password"]

# OpenSSL 3's default for `openssl pkcs12 -export` is 2048; a key at rest deserves more.
_KDF_ROUNDS = 100_000
_MAX_PASSWORD_BYTES = 1024


def p12_password(path: Path | None) -> bytes:
    """The ``--p12`` password: the first line of ``path``, or asked for on the terminal.

    Raises:
        CLIError: the file is unreadable or holds an empty first line, or there is no file
            and no terminal to ask on (nothing is sent to the service then).
    """
    if path is not None:
        try:
            data = read_small(path, limit=_MAX_PASSWORD_BYTES)
        except OSError as exc:
            raise CLIError(f"--p12-password-file: {path}: {exc.strerror or exc}") from None
        password = data.split(b"\n", 1)[0].rstrip(b"\r")
        if not password:
            raise CLIError(f"--p12-password-file: {path}: the first line is empty")
        return password
    if not sys.stdin.isatty():
        raise CLIError(
            "--p12: give the password with --p12-password-file FILE (no terminal to ask on)"
        )
    first = getpass.getpass("PKCS#12 password: ")
    if not first:
        raise CLIError("--p12: the password must not be empty")
    if getpass.getpass("PKCS#12 password again: ") != first:
        raise CLIError("--p12: the passwords differ")
    return first.encode()


def p12_bytes(
    *, certificate_pem: str, key_pem: str, chain_pem: str, password: bytes, name: str
) -> bytes:
    """A PKCS#12 file of the key, its certificate and the CA chain, AES-256 encrypted.

    Raises:
        CLIError: the key or certificates cannot be read (a reply that is not PEM).
    """
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem.strip() else []
    except ValueError:
        raise CLIError("--p12: the certificate or key received is not PEM") from None
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        key,  # type: ignore[arg-type]
        certificate,
        chain,
        encryption,
    )
