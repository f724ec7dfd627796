"""``nodecert ca``: the local CA's hierarchy (``init``, ``sign-intermediate``).

``ca init`` creates the two-tier CA of the home (``NODECERT_HOME``); with
``--root-key-out PATH`` the root key goes to PATH, for the operator to take offline, and
the service runs with the issuing intermediate alone. ``ca sign-intermediate`` is the
offline root's one job: sign an intermediate from a CSR (or have the ACM Private CA
root ``--acmpca-arn`` sign it: :mod:`nodecert.backends.acmpca.intermediate`). Replacing the
issuing intermediate afterwards (``ca rotate``, ``ca root-crl``, ``ca prune``) is
:mod:`nodecert.cli.ca_rotation`. Keys are read with ``NODECERT_CA_PASSPHRASE``; neither a key
nor the passphrase is ever printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.cli.ca_rotation import add_rotation_commands
from nodecert.cli.common import CLIError, UsageError, read_input

__all__ = ["add_ca_commands"]

_MAX_INTERMEDIATE_DAYS = 3650


def add_ca_commands(sub: Any) -> None:
    """Add ``ca`` and its actions (``init``, ``sign-intermediate``, then those of
    :func:`~nodecert.cli.ca_rotation.add_rotation_commands`) to the ``sub`` subparsers."""
    ca = sub.add_parser("ca", help="the local CA: root, issuing intermediate")
    ca_sub = ca.add_subparsers(metavar="ACTION", required=True)

    init = ca_sub.add_parser(
        "init",
        help="create the home's two-tier CA (root + issuing intermediate) and exit",
        description=(
            "Create a root and an issuing intermediate in $NODECERT_HOME/ca. With"
            " --root-key-out the root key is written to PATH only (mode 0600, encrypted"
            " with NODECERT_CA_PASSPHRASE when set): take it offline; the service never"
            " needs it."
        ),
    )
    init.add_argument(
        "--root-key-out",
        type=Path,
        metavar="PATH",
        help="write the root key here (a new file) instead of into the home",
    )
    init.set_defaults(handler=_init)

    sign = ca_sub.add_parser(
        "sign-intermediate",
        help="sign an issuing intermediate from a CSR: an (offline) root key, or ACM Private CA",
        description=(
            "Sign CSR as an issuing intermediate (CA, path length 0) with the root key and"
            " certificate, or have the ACM Private CA root --acmpca-arn sign it with the"
            " SubordinateCACertificate_PathLen0 template (region: NODECERT_AWS_REGION or the"
            " SDK's; --out then holds the intermediate and PCA's root, for ca rotate --install"
            " --new-root). Only the CSR's subject and public key are used."
        ),
    )
    sign.add_argument("csr", type=Path, metavar="CSR", help="PEM certificate signing request")
    sign.add_argument(
        "--root-key",
        type=Path,
        metavar="PATH",
        help="the root's private key (PEM; NODECERT_CA_PASSPHRASE if it is encrypted)",
    )
    sign.add_argument("--root-cert", type=Path, metavar="PATH", help="the root's certificate")
    sign.add_argument(
        "--acmpca-arn",
        metavar="ARN",
        help="instead of --root-key/--root-cert: the ACM Private CA root that signs it",
    )
    sign.add_argument("--out", type=Path, required=True, metavar="PATH", help="a new file")
    sign.add_argument(
        "--days",
        type=int,
        default=1095,
        help=f"validity (default 1095, at most {_MAX_INTERMEDIATE_DAYS}; never past the root's)",
    )
    sign.set_defaults(handler=_sign_intermediate)

    add_rotation_commands(ca_sub)


def _init(args: argparse.Namespace) -> None:
    from nodecert.backends.local.home import create_two_tier, locked
    from nodecert.bootstrap import settings_from_environment
    from nodecert.support.files import secure_home

    settings = settings_from_environment()
    directory = settings.home / "ca"
    root_key_out = args.root_key_out
    if root_key_out is not None and root_key_out.exists():
        raise CLIError(f"--root-key-out: {root_key_out} exists already; not replacing it")
    secure_home(settings.home)
    directory.mkdir(mode=0o700, exist_ok=True)
    with locked(directory):
        if (directory / "ca.crt").exists():
            raise CLIError(f"ca init: {directory.absolute()} has a CA already")
        create_two_tier(
            directory,
            organization=settings.organization,
            key_type=settings.ca_key_type,
            passphrase=settings.ca_passphrase,
            now=datetime.now(UTC),
            root_key_out=root_key_out,
            issuing_key=_external_public_key(settings),
        )
    where = root_key_out if root_key_out is not None else directory / "root.key"
    print(f"root certificate:  {directory.absolute() / 'root.crt'}")
    print(f"root key:          {where.absolute()} (mode 0600)")
    print(f"issuing CA:        {directory.absolute() / 'ca.crt'}")
    if root_key_out is not None:
        print("take the root key offline: the service runs with the issuing CA alone")
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)


def _external_public_key(settings: Any) -> Any:
    # The issuing key in AWS KMS or a PKCS#11 token (generated there when missing): the
    # intermediate is made for its public half.
    from nodecert.bootstrap import issuing_signer

    signer = issuing_signer(settings, create=True)
    return None if signer is None else signer.public_key()


def _sign_intermediate(args: argparse.Namespace) -> None:
    from nodecert.backends.local.hierarchy import load_key, sign_intermediate
    from nodecert.backends.local.home import write_new_private

    by_root = args.root_key is not None or args.root_cert is not None
    if by_root == (args.acmpca_arn is not None):
        raise UsageError("ca sign-intermediate: --root-key and --root-cert, or --acmpca-arn")
    if by_root and (args.root_key is None or args.root_cert is None):
        raise UsageError("ca sign-intermediate: --root-key and --root-cert go together")
    if not 1 <= args.days <= _MAX_INTERMEDIATE_DAYS:
        raise CLIError(f"--days: must be between 1 and {_MAX_INTERMEDIATE_DAYS}")
    if args.out.exists():
        raise CLIError(f"--out: {args.out} exists already; not replacing it")
    csr = read_input(args.csr, "CSR")
    if args.acmpca_arn is not None:
        chain = _sign_at_pca(csr, args.acmpca_arn, args.days)
    else:
        try:
            root = x509.load_pem_x509_certificate(read_input(args.root_cert, "--root-cert"))
        except ValueError:
            raise CLIError(f"--root-cert: {args.root_cert} is not a PEM certificate") from None
        # The passphrase only: an offline machine has no other NODECERT_* settings to check.
        passphrase = _passphrase()
        root_key = load_key(args.root_key, passphrase)
        chain = (
            sign_intermediate(
                csr,
                root_key=root_key,
                root=root,
                now=datetime.now(UTC),
                lifetime=timedelta(days=args.days),
            ),
        )
    certificate = chain[0]
    # Not secret, but a new file that is never half written or silently replaced.
    write_new_private(args.out, b"".join(c.public_bytes(Encoding.PEM) for c in chain))
    args.out.chmod(0o644)
    print(f"signed {certificate.subject.rfc4514_string()}")
    print(f"valid until {certificate.not_valid_after_utc.isoformat()}")
    if len(chain) > 1:
        print(f"by {chain[-1].subject.rfc4514_string()} (ACM PCA), chain included")
        print("then: nodecert ca rotate --install <this file> --new-root (first time)")
    print(f"wrote {args.out}")


def _sign_at_pca(csr: bytes, arn: str, days: int) -> tuple[x509.Certificate, ...]:
    from nodecert.backends.acmpca.intermediate import sign_intermediate_at_pca
    from nodecert.support.awsclients import botocore_errors, error_code, make_client

    # Region as the service reads it, else the CA's own (from its ARN); the endpoint from
    # botocore's own configuration (AWS_ENDPOINT_URL_ACM_PCA). max_attempts=1: the call
    # retries by itself, under its deadline.
    fields = arn.split(":")
    region = os.environ.get("NODECERT_AWS_REGION") or (fields[3] if len(fields) > 3 else "")
    try:
        client = make_client("acm-pca", region=region or None, max_attempts=1)
    except botocore_errors() as exc:
        raise CLIError(f"--acmpca-arn: cannot make an ACM PCA client: {error_code(exc)}") from exc
    return sign_intermediate_at_pca(client, csr, ca_arn=arn, days=days, now=datetime.now(UTC))


def _passphrase() -> str | None:
    return os.environ.get("NODECERT_CA_PASSPHRASE") or None
