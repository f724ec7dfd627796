"""``nodecert renew``: renew when due (a timer can call it forever), or ``--watch``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from nodecert.cli.common import (
    CLIError,
    UsageError,
    add_client_options,
    client_from,
    duration,
    setup_logging,
    warnings_to_stderr,
)
from nodecert.cli.output import OutputFile, check_writable, write_outputs
from nodecert.cli.pkcs12 import p12_bytes, p12_password
from nodecert.client._files import read_small
from nodecert.client.renewal._revocation import check_revocation
from nodecert.client.renewal.agent import (
    RenewalClientError,
    RenewalTarget,
    renew_if_due,
    run_deploy_hook,
    watch,
)
from nodecert.core.identity import serial_for_display

__all__ = ["add_renew_command"]


def add_renew_command(sub: Any) -> None:
    """Add ``renew`` to the ``sub`` subparsers."""
    renew = sub.add_parser(
        "renew",
        help="renew a certificate with its own key (no login) when it is due;"
        " --watch to keep it fresh",
        description="Renew when due: in the last third of the lifetime, or --renew-before"
        " the end. When not due, print when it will be and exit 0; the service is asked at"
        " most once a day whether the certificate was revoked meanwhile (its CRL; exit 1"
        " when it was), so a timer can run it as often as it likes.",
    )
    renew.add_argument(
        "--cert", type=Path, required=True, metavar="FILE", help="the certificate to renew (PEM)"
    )
    renew.add_argument(
        "--key", type=Path, required=True, metavar="FILE", help="its private key (PEM)"
    )
    add_client_options(renew, token=False)
    renew.add_argument("--audience", help="renewal audience (default from the certificate)")
    when = renew.add_mutually_exclusive_group()
    when.add_argument(
        "--renew-before",
        type=duration,
        metavar="DURATION",
        help="due this long before expiry, e.g. 2d, 36h (default: the last third)",
    )
    when.add_argument("--force", action="store_true", help="renew now, due or not")
    renew.add_argument(
        "--watch",
        action="store_true",
        help="stay running: renew each certificate when due (with jitter), log to stderr,"
        " retry transient failures with backoff",
    )
    renew.add_argument(
        "--deploy-hook",
        metavar="COMMAND",
        help="shell command run after each renewal (e.g. 'nginx -s reload'); it sees"
        " RENEWED_CERT, RENEWED_KEY and RENEWED_SERIAL",
    )
    renew.add_argument(
        "--p12",
        type=Path,
        metavar="FILE",
        help="keep a PKCS#12 file (key, certificate, CA chain; AES-256, 0600) in step: written"
        " after each renewal, and when it does not exist yet",
    )
    renew.add_argument(
        "--p12-password-file",
        type=Path,
        metavar="FILE",
        help="the PKCS#12 password is its first line (default: asked on the terminal)",
    )
    renew.add_argument("--json", action="store_true", help="print the result as JSON")
    renew.set_defaults(handler=_renew)


def _renew(args: argparse.Namespace) -> None:
    if args.watch and args.force:
        raise UsageError("--force: not with --watch (it renews whenever due)")
    if args.watch and (args.p12 is not None or args.json):
        raise UsageError(f"{'--p12' if args.p12 is not None else '--json'}: not with --watch")
    if args.p12_password_file is not None and args.p12 is None:
        raise UsageError("--p12-password-file: only with --p12 FILE")
    # Asked before the renewal: a renewal cannot be undone, a missing password can.
    password = p12_password(args.p12_password_file) if args.p12 is not None else None
    target = RenewalTarget(
        cert=args.cert, key=args.key, client=client_from(args, token=False), audience=args.audience
    )
    hook: str | None = args.deploy_hook

    def deploy(certificate: x509.Certificate) -> None:
        if hook:
            run_deploy_hook(hook, target, certificate)

    if args.watch:
        setup_logging()
        watch(target, sleep=time.sleep, renew_before=args.renew_before, after_renewal=deploy)
        return

    def writable() -> None:
        # Where the files really are: a renewal writes through symbolic links.
        paths = [args.cert, args.key] + ([args.p12] if args.p12 is not None else [])
        for path in {Path(os.path.realpath(p)).parent for p in paths}:
            check_writable(path, option="--cert/--key")

    # A renewal that was interrupted, and is now completed, is worth a line on stderr.
    with warnings_to_stderr("nodecert.renew"):
        outcome = renew_if_due(
            target,
            now=datetime.now(UTC),
            renew_before=args.renew_before,
            force=args.force,
            before_renewal=writable,
        )
    renewed = outcome.renewed
    current = renewed if renewed is not None else outcome.current
    document: dict[str, Any] = {
        "renewed": renewed is not None,
        "serialNumber": format(current.serial_number, "x"),
        "notAfter": _time(current.not_valid_after_utc),
        "cert": str(args.cert),
    }
    if renewed is None:
        document["due"] = _time(outcome.due)
        revoked = check_revocation(target, current, now=datetime.now(UTC))
        if revoked is not None:
            reason = f" ({revoked.reason})" if revoked.reason else ""
            raise CLIError(
                f"{args.cert} (serial {serial_for_display(current.serial_number)}) was revoked"
                f" at the service on {_time(revoked.revoked_at)}{reason}: it cannot be renewed;"
                " get a new certificate (nodecert request, or nodecert nodes certificate for a"
                " node's own)"
            )
    if password is not None and (renewed is not None or not args.p12.exists()):
        _write_p12(args, target, password)
        document["pkcs12"] = str(args.p12)
    if args.json:
        print(json.dumps(document, indent=2))
    elif renewed is None:
        print(
            f"not due: {args.cert} (serial {serial_for_display(current.serial_number)}) is due"
            f" for renewal at {_time(outcome.due)}; valid until"
            f" {_time(current.not_valid_after_utc)}"
        )
    else:
        print(
            f"renewed: serial {serial_for_display(current.serial_number)}, valid until"
            f" {_time(current.not_valid_after_utc)}: {args.cert}"
        )
    if renewed is None:
        return
    sys.stdout.flush()
    try:
        deploy(renewed)
    except RenewalClientError as exc:
        # The files are renewed; the exit status still tells a script the hook failed.
        raise CLIError(f"renewed, but {exc.detail}") from exc


def _write_p12(args: argparse.Namespace, target: RenewalTarget, password: bytes) -> None:
    """Write ``--p12`` from the certificate and key files as they are now, and the CA chain."""
    try:
        certificate_pem = read_small(args.cert).decode("ascii")
        key_pem = read_small(args.key).decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"--p12: cannot read the renewed files: {exc}") from None
    data = p12_bytes(
        certificate_pem=certificate_pem,
        key_pem=key_pem,
        chain_pem=target.client.ca_chain(),
        password=password,
        name=args.cert.stem,
    )
    write_outputs([OutputFile(args.p12, data, 0o600)], issued="the renewed certificate")


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
