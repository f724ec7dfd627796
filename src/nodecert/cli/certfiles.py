"""``nodecert inspect FILE`` and ``nodecert verify FILE``: what a certificate file says.

Both read PEM or DER. ``inspect`` shows the identity, names, key, fingerprint and time left,
offline. ``verify`` checks the chain up to the service's CA (or ``--ca FILE``), the validity
window, and the status at the service: the ledger with a token, else the CRL.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from nodecert.cli.common import DEFAULT_SERVER, CLIError, UsageError, client_from
from nodecert.client._files import read_small
from nodecert.core.errors import NodecertError, NotFoundError
from nodecert.core.identity import Identity, format_serial, serial_for_display

__all__ = ["add_certificate_file_commands", "describe", "load_certificate"]

_EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


def add_certificate_file_commands(sub: Any) -> None:
    """Add ``inspect`` and ``verify`` to the ``sub`` subparsers."""
    inspect = sub.add_parser(
        "inspect", help="show a certificate's identity, names, key, fingerprint and validity"
    )
    inspect.add_argument("file", type=Path, metavar="FILE", help="a certificate, PEM or DER")
    inspect.add_argument("--json", action="store_true", help="print the result as JSON")
    inspect.set_defaults(handler=_inspect)

    verify = sub.add_parser(
        "verify",
        help="check a certificate: chain to the CA, validity, and status at the service",
        description=(
            "Check that FILE chains to the CA (--ca FILE, else the service's GET /v1/ca), is"
            " within its validity window, and is not revoked: at the service's ledger with a"
            " token (--token or $NODECERT_TOKEN), else in its CRL (GET /v1/crl). Exit status"
            " 0 when all hold, 1 with one line saying which does not."
        ),
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="the certificate, PEM or DER")
    verify.add_argument(
        "--ca", type=Path, metavar="FILE", help="CA certificates (PEM) instead of the service's"
    )
    verify.add_argument(
        "--offline",
        action="store_true",
        help="check the chain (needs --ca) and the validity only, not the status",
    )
    verify.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("NODECERT_SERVER", DEFAULT_SERVER),
        help=f"service URL (default $NODECERT_SERVER or {DEFAULT_SERVER})",
    )
    verify.add_argument("--token", help="bearer token (default $NODECERT_TOKEN): ledger status")
    verify.add_argument(
        "--cacert", type=Path, metavar="FILE", help="CA bundle to trust for an https server"
    )
    verify.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for the server (default 30)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=_verify)


def load_certificate(path: Path) -> x509.Certificate:
    """The certificate in ``path``, PEM or DER.

    Raises:
        CLIError: one line naming the file: unreadable, or not a certificate.
    """
    try:
        data = read_small(path)
    except OSError as exc:
        raise CLIError(f"{path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        kind = "PEM" if b"-----BEGIN" in data else "DER"
        reason = " ".join(str(exc).split())[:160]
        raise CLIError(f"{path}: not a {kind} certificate ({reason})") from None


def describe(certificate: x509.Certificate, *, now: datetime) -> dict[str, Any]:
    """What ``inspect --json`` prints: a certificate's facts, read defensively.

    A malformed extension is reported in its field (``"error: …"``), not raised: inspect is
    for looking at certificates that may be wrong.
    """
    try:
        identity = Identity.from_certificate(certificate)
        who: dict[str, Any] = {"userId": identity.user_id, "nodeId": identity.node_id}
    except NodecertError as exc:
        who = {"error": str(exc.detail)}
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return {
        "identity": who,
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serialNumber": format_serial(certificate.serial_number),
        "serial": serial_for_display(certificate.serial_number),
        "notBefore": _time(not_before),
        "notAfter": _time(not_after),
        "timeLeft": _time_left(not_before, not_after, now),
        "keyType": _key_type(certificate),
        "subjectAltNames": _sans(certificate),
        "extendedKeyUsage": _ekus(certificate),
        "fingerprintSha256": certificate.fingerprint(hashes.SHA256()).hex(),
    }


def _inspect(args: argparse.Namespace) -> None:
    certificate = load_certificate(args.file)
    facts = describe(certificate, now=datetime.now(UTC))
    if args.json:
        print(json.dumps(facts, indent=2))
        return
    who = facts["identity"]
    shown = (
        f"user={who['userId']} node={who['nodeId']}"
        if "userId" in who
        else f"(no nodecert identity: {who['error']})"
    )
    sans = facts["subjectAltNames"]
    ekus = facts["extendedKeyUsage"]
    fingerprint = facts["fingerprintSha256"].upper()
    lines = [
        f"identity:    {shown}",
        f"subject:     {facts['subject']}",
        f"issuer:      {facts['issuer']}",
        f"serial:      {facts['serial']}",
        f"not before:  {facts['notBefore']}",
        f"not after:   {facts['notAfter']}",
        f"time left:   {facts['timeLeft']}",
        f"key:         {facts['keyType']}",
        f"names:       {', '.join(sans) if isinstance(sans, list) else sans}",
        f"key usage:   {', '.join(ekus) if isinstance(ekus, list) else ekus}",
        "sha256:      " + ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)),
    ]
    print("\n".join(lines))


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _time_left(not_before: datetime, not_after: datetime, now: datetime) -> str:
    if now < not_before:
        return f"not valid yet (starts in {_span(not_before - now)})"
    if now >= not_after:
        return f"expired {_span(now - not_after)} ago"
    return _span(not_after - now)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {rest % 60}s"


def _key_type(certificate: x509.Certificate) -> str:
    try:
        key = certificate.public_key()
    except (ValueError, TypeError) as exc:  # An algorithm cryptography does not load.
        return f"error: {' '.join(str(exc).split())[:120]}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _sans(certificate: x509.Certificate) -> list[str] | str:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        return f"error: {' '.join(str(exc).split())[:120]}"
    names: list[str] = []
    for name in san:
        if isinstance(name, x509.DNSName):
            names.append(f"DNS:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"URI:{name.value}")
        elif isinstance(name, x509.IPAddress):
            names.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
        else:
            names.append(type(name).__name__)
    return names


def _ekus(certificate: x509.Certificate) -> list[str] | str:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        return f"error: {' '.join(str(exc).split())[:120]}"
    return [_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku]


# verify


def _verify(args: argparse.Namespace) -> None:
    certificate = load_certificate(args.file)
    if args.offline and args.ca is None:
        raise UsageError("--offline: give the CA certificates with --ca FILE")
    if not 0 < args.timeout <= 3600:
        raise UsageError("--timeout: a number of seconds in (0, 3600]")
    client = None if args.offline else _client(args)
    if args.ca is not None:
        anchors = _load_bundle(args.ca)
    else:
        assert client is not None
        anchors = x509.load_pem_x509_certificates(client.ca_chain().encode())
    now = datetime.now(UTC)
    result: dict[str, Any] = {
        "file": str(args.file),
        "serialNumber": format_serial(certificate.serial_number),
        "chain": _chain_problem(certificate, anchors),
        "validity": _validity_problem(certificate, now),
        "status": None,
    }
    if client is not None:
        result["status"] = _status(client, certificate, has_token=_has_token(args))
    failures = [
        f"{what}: {problem}"
        for what, problem in (("chain", result["chain"]), ("validity", result["validity"]))
        if problem is not None
    ]
    if result["status"] not in (None, "active", "superseded", "not revoked"):
        failures.append(f"status: {result['status']} at the service")
    result["ok"] = not failures
    serial = serial_for_display(certificate.serial_number)
    if args.json:
        print(json.dumps(result, indent=2))
    elif not failures:
        status = f", {result['status']}" if result["status"] else " (status not checked)"
        print(f"{args.file}: OK: serial {serial}, chains to the CA, valid{status}")
    if failures:
        raise CLIError(f"{args.file}: serial {serial}: " + "; ".join(failures))


def _client(args: argparse.Namespace) -> Any:
    # GET /v1/ca and /v1/crl need no token; the ledger's status does.
    return client_from(args, token=_has_token(args))


def _has_token(args: argparse.Namespace) -> bool:
    return bool((args.token or os.environ.get("NODECERT_TOKEN") or "").strip())


def _load_bundle(path: Path) -> list[x509.Certificate]:
    try:
        data = read_small(path)
    except OSError as exc:
        raise CLIError(f"--ca: {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CLIError(f"--ca: {path}: no certificates (PEM or DER)") from None


def _chain_problem(leaf: x509.Certificate, anchors: Sequence[x509.Certificate]) -> str | None:
    """None when ``leaf`` chains to a self-signed certificate of ``anchors``, else why not."""
    current = leaf
    for _ in range(8):  # Far more CA tiers than anyone runs.
        issuers = [c for c in anchors if c.subject == current.issuer]
        if not issuers:
            return f"no CA named {current.issuer.rfc4514_string()!r} in the CA certificates"
        issuer = None
        for candidate in issuers:
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = candidate
            break
        if issuer is None:
            return "the signature does not verify with the CA's key (another CA of that name?)"
        if issuer.subject == issuer.issuer:
            return None
        current = issuer
    return "the chain is too long"


def _validity_problem(certificate: x509.Certificate, now: datetime) -> str | None:
    if now < certificate.not_valid_before_utc:
        return f"not valid before {_time(certificate.not_valid_before_utc)}"
    if now >= certificate.not_valid_after_utc:
        return f"expired at {_time(certificate.not_valid_after_utc)}"
    return None


def _status(client: Any, certificate: x509.Certificate, *, has_token: bool) -> str:
    """The status the service gives: the ledger's with a token, else from its CRL."""
    serial = format_serial(certificate.serial_number)
    if has_token:
        try:
            return str(client.certificate(serial).status)
        except NotFoundError:
            return "unknown (not in the ledger, or not yours)"
    try:
        crl = client.crl()
    except NotFoundError:
        return "unknown (the service publishes no CRL; give a token to ask the ledger)"
    revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    return "revoked" if revoked is not None else "not revoked"
