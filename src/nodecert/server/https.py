"""HTTPS for ``nodecert serve``: ``NODECERT_TLS_CERT`` and ``NODECERT_TLS_KEY``.

The service returns private keys (server-side key generation), so it should not speak
plain HTTP beyond loopback. With both settings, every worker serves TLS 1.2 and 1.3 with
Mozilla's "intermediate" configuration (https://ssl-config.mozilla.org/, guidelines 5.7):
ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (no CBC, no RSA key
exchange, no SHA-1 MACs), OpenSSL's TLS 1.3 suites, no compression, no renegotiation, and
the client's cipher order (all of them are strong). TLS 1.0 and 1.1 are refused.

Each worker builds its context with :func:`server_context` (:class:`HTTPSConfig`), which
:func:`check_files` also runs once before the workers start, so that a missing, unreadable
or mismatched certificate or key is one line naming the setting instead of a traceback in
every worker.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import uvicorn

from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError

__all__ = [
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "HTTPSConfig",
    "check_files",
    "server_context",
    "tls_files",
]

# The TLS 1.2 suites of Mozilla's intermediate profile, in its order. The DHE suites of
# the profile are left out: they need DH parameters, which Python's ssl does not load.
MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """The server-side TLS context: the certificate (with its chain) and the key.

    ``certificate`` is a PEM file: the server certificate first, then its intermediates.
    ``key`` is its unencrypted PEM private key (keep it 0600).

    Raises:
        ConfigurationError: a file is missing or unreadable, or the key does not belong
            to the certificate. The message names the files, never their contents.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        # A password callback that refuses: an encrypted key fails here instead of
        # prompting on the terminal of every worker.
        context.load_cert_chain(certificate, key, password=_no_password)
    except FileNotFoundError as exc:
        raise ConfigurationError(
            "NODECERT_TLS_CERT/NODECERT_TLS_KEY:"
            f" {exc.filename or f'{certificate} or {key}'}: no such file"
        ) from None
    # ssl.SSLError is an OSError: it goes first.
    except (ssl.SSLError, ValueError, TypeError):
        raise ConfigurationError(
            f"NODECERT_TLS_CERT/NODECERT_TLS_KEY: {certificate} and {key} are not a PEM"
            " certificate and its unencrypted private key"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"NODECERT_TLS_CERT/NODECERT_TLS_KEY: cannot read {certificate} and {key}:"
            f" {exc.strerror or exc}"
        ) from None
    return context


def check_files(settings: Settings) -> None:
    """Load the TLS files once (when set), so that a mistake stops the start in one line.

    Raises:
        ConfigurationError: see :func:`server_context`.
    """
    if settings.tls_cert is not None and settings.tls_key is not None:
        server_context(settings.tls_cert, settings.tls_key)


def _no_password() -> bytes:
    raise ValueError("encrypted keys are not supported")


class HTTPSConfig(uvicorn.Config):
    """uvicorn's configuration with :func:`server_context` as its TLS context.

    Args:
        tls: The certificate and key files, or None for plain HTTP. uvicorn never loads
            them itself: its loader would prompt on the terminal for an encrypted key.
        *args, **kwargs: As for ``uvicorn.Config``.
    """

    def __init__(self, *args: Any, tls: tuple[Path, Path] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tls_files = tls

    def load(self) -> None:
        """Load as uvicorn does, then put our hardened context in place."""
        super().load()
        if self.tls_files is not None:
            self.ssl = server_context(*self.tls_files)
            # What uvicorn reads to say "https://" in its start-up line.
            self.ssl_certfile, self.ssl_keyfile = (str(p) for p in self.tls_files)


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key of ``settings``, or None when TLS is off."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return settings.tls_cert, settings.tls_key
