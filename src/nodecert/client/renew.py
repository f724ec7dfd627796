"""The client side of renewal: ``nodecert renew --cert F --key F [--watch] [--deploy-hook C]``.

A renewal makes a fresh key of the same type locally, sends only its CSR, and proves
possession of the current certificate with a short JWT signed by the current key
(:func:`nodecert.issuing.renewal.mint_renewal_token`). The new key never leaves the machine.

Files are replaced atomically (each reader sees the old or the new file, never half of
one); the certificate is written right after the key, so the window in which a reader
could pair a new key with the old certificate is a single rename. A deploy hook (a shell
command, like certbot's ``--deploy-hook``) then tells the consumer, nginx say, to reload.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.core.errors import NodecertError
from nodecert.core.files import write_atomic
from nodecert.core.identity import Identity
from nodecert.core.keys import (
    PrivateKey,
    build_csr,
    generate_private_key,
    key_type_of,
    private_key_pem,
)
from nodecert.core.tokens import mint_renewal_token, renewal_audience

__all__ = [
    "RenewalClientError",
    "RenewalTarget",
    "renew_at",
    "renew_files",
    "run_deploy_hook",
    "watch",
]

log = logging.getLogger("nodecert")


class RenewalClientError(Exception):
    """A renewal failed; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class RenewalTarget:
    """Where to renew: the files to rewrite and the service to ask."""

    cert: Path
    key: Path
    server: str
    cacert: Path | None = None
    audience: str | None = None


def renew_at(certificate: x509.Certificate, fraction: float = 2 / 3) -> datetime:
    """When to renew: ``fraction`` of the way through the certificate's lifetime."""
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return start + (end - start) * fraction


def _load(target: RenewalTarget) -> tuple[x509.Certificate, PrivateKey]:
    try:
        certificate = x509.load_pem_x509_certificate(target.cert.read_bytes())
        key = serialization.load_pem_private_key(target.key.read_bytes(), password=None)
    except OSError as exc:
        raise RenewalClientError(f"{exc.filename}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise RenewalClientError(f"{target.cert}/{target.key}: not a PEM certificate/key") from exc
    if key.public_key() != certificate.public_key():
        raise RenewalClientError(f"{target.key}: does not belong to {target.cert}")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise RenewalClientError(f"{target.key}: only RSA and EC keys are supported")
    return certificate, key


def _trust_domain(certificate: x509.Certificate) -> str:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri.removeprefix("spiffe://").split("/", 1)[0]
    raise RenewalClientError("certificate: carries no spiffe:// identity")


def renew_files(target: RenewalTarget, *, now: datetime | None = None) -> x509.Certificate:
    """Renew the certificate in ``target.cert`` and rewrite both files.

    Raises:
        RenewalClientError: unreadable files, an unreachable service or a refusal.
    """
    certificate, key = _load(target)
    try:
        identity = Identity.from_certificate(certificate)
        key_type = key_type_of(certificate.public_key())
    except NodecertError as exc:
        raise RenewalClientError(f"{target.cert}: {exc.detail}") from exc
    trust_domain = _trust_domain(certificate)
    new_key = generate_private_key(key_type)
    organizations = certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    organization = str(organizations[0].value) if organizations else "nodecert"
    csr = build_csr(new_key, identity, organization=organization, trust_domain=trust_domain)
    token = mint_renewal_token(
        certificate,
        key,
        audience=target.audience or renewal_audience(trust_domain),
        now=now,
    )
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii")}
    reply = _post(target, "/v1/renew", token, body)
    try:
        renewed = x509.load_pem_x509_certificate(str(reply["certificate"]).encode())
    except (KeyError, ValueError) as exc:
        raise RenewalClientError("renew: the service sent no certificate") from exc
    if renewed.public_key() != new_key.public_key():
        raise RenewalClientError("renew: the service certified another key")
    write_atomic(target.key, private_key_pem(new_key).encode(), mode=0o600)
    write_atomic(target.cert, renewed.public_bytes(serialization.Encoding.PEM))
    return renewed


def _post(target: RenewalTarget, path: str, token: str, body: dict[str, str]) -> dict[str, object]:
    url = target.server.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise RenewalClientError(f"--server: {target.server!r} must start with http(s)://")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above.
        url, data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    context = ssl.create_default_context(cafile=target.cacert) if target.cacert else None
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:  # noqa: S310
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
            detail = f"{problem['detail']} ({problem['code']}, HTTP {exc.code})"
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {exc.code} {exc.reason}"
        raise RenewalClientError(f"renew: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RenewalClientError(f"cannot reach {target.server}: {exc}") from None
    if not isinstance(data, dict):
        raise RenewalClientError("renew: unexpected reply")
    return data


def watch(
    target: RenewalTarget,
    *,
    renew: Callable[[RenewalTarget], x509.Certificate] = renew_files,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    retry: timedelta = timedelta(seconds=60),
    max_renewals: int | None = None,
    after_renewal: Callable[[x509.Certificate], None] | None = None,
) -> None:
    """Renew ``target`` at two thirds of each certificate's lifetime, forever.

    Failures are retried every ``retry`` until the certificate expires. ``after_renewal``
    runs after each renewal (the deploy hook); when it fails, the failure is logged and
    the watch goes on: the new files are in place either way.

    Raises:
        RenewalClientError: the certificate expired before a renewal succeeded.
    """
    renewals = 0
    while max_renewals is None or renewals < max_renewals:
        certificate, _ = _load(target)
        wait = (renew_at(certificate) - clock()).total_seconds()
        if wait > 0:
            log.info("renew: next renewal in %.0f s", wait)
            sleep(wait)
        try:
            renewed = renew(target)
        except RenewalClientError as exc:
            if clock() >= certificate.not_valid_after_utc:
                raise RenewalClientError(f"{exc}; the certificate has expired") from exc
            log.warning("renew: %s; retrying in %.0f s", exc, retry.total_seconds())
            sleep(retry.total_seconds())
            continue
        renewals += 1
        log.info("renew: renewed, valid until %s", renewed.not_valid_after_utc.isoformat())
        if after_renewal is not None:
            try:
                after_renewal(renewed)
            except RenewalClientError as exc:
                log.warning("renew: %s", exc)


_HOOK_TIMEOUT_S = 300.0


def run_deploy_hook(command: str, target: RenewalTarget, certificate: x509.Certificate) -> None:
    """Run ``command`` with ``/bin/sh`` after a renewal, as certbot runs its deploy hooks.

    The hook sees ``RENEWED_CERT``, ``RENEWED_KEY`` (the files just written) and
    ``RENEWED_SERIAL`` (hex) in its environment; its output goes where ours goes.

    Raises:
        RenewalClientError: the command could not start, exited non-zero or ran for
            more than five minutes.
    """
    env = {
        **os.environ,
        "RENEWED_CERT": str(target.cert),
        "RENEWED_KEY": str(target.key),
        "RENEWED_SERIAL": format(certificate.serial_number, "x"),
    }
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command], env=env, timeout=_HOOK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise RenewalClientError(
            f"--deploy-hook: still running after {_HOOK_TIMEOUT_S:.0f} s; stopped"
        ) from None
    except OSError as exc:
        raise RenewalClientError(f"--deploy-hook: cannot run /bin/sh: {exc.strerror}") from None
    if done.returncode != 0:
        raise RenewalClientError(f"--deploy-hook: exited with status {done.returncode}")
