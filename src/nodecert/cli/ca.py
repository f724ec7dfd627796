"""``nodecert ca``: the local CA's hierarchy (``init``, ``sign-intermediate``, ``rotate``).

``ca init`` creates the two-tier CA of the home (``NODECERT_HOME``); with
``--root-key-out PATH`` the root key goes to PATH, for the operator to take offline, and
the service runs with the issuing intermediate alone. ``ca sign-intermediate`` is the
offline root's one job: sign an intermediate from a CSR (or have the ACM Private CA
root ``--acmpca-arn`` sign it: :mod:`nodecert.backends.acmpca.intermediate`). ``ca rotate``
replaces the issuing intermediate (see :mod:`nodecert.backends.local.rotation`). Keys are read
and written with ``NODECERT_CA_PASSPHRASE``; neither a key nor the passphrase is ever
printed.
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

from nodecert.cli.common import CLIError, UsageError, local_settings
from nodecert.client._files import read_small

__all__ = ["add_ca_commands"]

_MAX_INTERMEDIATE_DAYS = 3650


def add_ca_commands(sub: Any) -> None:
    """Add ``ca init`` and ``ca sign-intermediate`` to the ``sub`` subparsers."""
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

    rotate = ca_sub.add_parser(
        "rotate",
        help="replace the issuing intermediate (the service issues from the new one at once)",
        description=(
            "Make a new issuing intermediate. The old one retires: its certificates stay"
            " valid until they expire, and renewal agents renew them early. With"
            " --retire-now (its key leaked) they are refused at once wherever the access"
            " decision runs, and each genuine one can still renew by proof of possession."
        ),
    )
    rotate.add_argument(
        "--retire-now", action="store_true", help="refuse the old intermediate's certificates now"
    )
    rotate.add_argument(
        "--root-key", type=Path, metavar="PATH", help="the root key, when it is kept offline"
    )
    rotate.add_argument(
        "--new-root",
        action="store_true",
        help=(
            "a new root too (root rotation; makes a one-tier CA of an earlier version"
            " two-tier); with --install: move to the root CERT chains to (ACM PCA's)"
        ),
    )
    rotate.add_argument(
        "--csr-out",
        type=Path,
        metavar="PATH",
        help="step 1 with the root elsewhere: write a CSR for the next intermediate (a new file)",
    )
    rotate.add_argument(
        "--install",
        type=Path,
        metavar="CERT",
        help="step 2: rotate to CERT, the root's signature on that CSR (ca sign-intermediate)",
    )
    rotate.set_defaults(handler=_rotate)

    prune = ca_sub.add_parser(
        "prune",
        help="stop trusting issuing CAs retired longer ago than any certificate lives",
        description=(
            "Remove the issuing CAs retired more than NODECERT_MAX_VALIDITY_DAYS (plus"
            " NODECERT_RENEW_GRACE_S) ago: every certificate they issued has expired."
        ),
    )
    prune.set_defaults(handler=_prune)


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


def _rotate(args: argparse.Namespace) -> None:
    from nodecert.backends.local.hierarchy import load_key
    from nodecert.backends.local.home import key_id, locked, read_certificate
    from nodecert.backends.local.rotation import install, rotate

    settings = local_settings()
    directory = settings.home / "ca"
    if not (directory / "ca.crt").exists():
        raise CLIError(f"ca rotate: no local CA in {directory.absolute()}")
    if settings.ca_kms_key_id is not None or settings.ca_pkcs11_module is not None:
        raise CLIError(
            "ca rotate: the issuing key is in AWS KMS or a PKCS#11 token; rotating it is"
            " not supported yet"
        )
    chosen = [args.new_root, args.root_key is not None, args.csr_out is not None, args.install]
    # --install --new-root: the certificate comes with its new root (ACM PCA's).
    with_root = args.new_root and args.install is not None and sum(bool(c) for c in chosen) == 2
    if sum(bool(c) for c in chosen) > 1 and not with_root:
        raise UsageError(
            "ca rotate: --new-root, --root-key, --csr-out and --install are exclusive"
            " (but --install --new-root)"
        )
    if args.csr_out is not None:
        _request_intermediate(args, settings, directory)
        return
    installed: list[x509.Certificate] = []
    if args.install is not None:
        try:
            installed = x509.load_pem_x509_certificates(_read(args.install, "--install"))
        except ValueError:
            raise CLIError(f"--install: {args.install} is not a PEM certificate") from None
    root_key = None if args.root_key is None else load_key(args.root_key, settings.ca_passphrase)
    with locked(directory):
        old = read_certificate(directory / "ca.crt")
        if installed:
            new = install(
                directory,
                installed[0],
                parents=installed[1:],
                passphrase=settings.ca_passphrase,
                new_root=args.new_root,
                retire_now=args.retire_now,
            )
        else:
            new = rotate(
                directory,
                organization=settings.organization,
                key_type=settings.ca_key_type,
                passphrase=settings.ca_passphrase,
                now=datetime.now(UTC),
                root_key=root_key,
                new_root=args.new_root,
                retire_now=args.retire_now,
            )
    state = "retired now: its certificates are refused" if args.retire_now else "retiring"
    print(f"issuing CA:  {new.subject.rfc4514_string()} (key id {key_id(new)})")
    print(f"previous:    {old.subject.rfc4514_string()} (key id {key_id(old)}): {state}")
    if args.new_root:
        print(f"new root:    {directory.absolute() / 'root.crt'}: give it to every trust store")
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)


def _prune(_args: argparse.Namespace) -> None:
    from nodecert.backends.local.home import locked
    from nodecert.backends.local.rotation import prune

    settings = local_settings()
    directory = settings.home / "ca"
    lifetime = timedelta(days=settings.max_validity_days, seconds=settings.renew_grace_s)
    with locked(directory):
        removed = prune(directory, older_than=lifetime, now=datetime.now(UTC))
    for key in removed:
        print(f"no longer trusted: issuing CA {key} (retired over {lifetime.days} days ago)")
    if not removed:
        print("nothing to prune")
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)


def _request_intermediate(args: argparse.Namespace, settings: Any, directory: Path) -> None:
    from nodecert.backends.local.home import locked, write_new_private
    from nodecert.backends.local.rotation import request

    if args.retire_now:
        raise UsageError("ca rotate: --retire-now goes with --install (step 2)")
    if args.csr_out.exists():
        raise CLIError(f"--csr-out: {args.csr_out} exists already; not replacing it")
    with locked(directory):
        csr = request(
            directory,
            organization=settings.organization,
            key_type=settings.ca_key_type,
            passphrase=settings.ca_passphrase,
            now=datetime.now(UTC),
        )
    write_new_private(args.csr_out, csr)
    args.csr_out.chmod(0o644)
    print(f"wrote {args.csr_out}: sign it with the root (nodecert ca sign-intermediate),")
    print("then: nodecert ca rotate --install <certificate> [--retire-now]")
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
    csr = _read(args.csr, "CSR")
    if args.acmpca_arn is not None:
        chain = _sign_at_pca(csr, args.acmpca_arn, args.days)
    else:
        try:
            root = x509.load_pem_x509_certificate(_read(args.root_cert, "--root-cert"))
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


def _read(path: Path, what: str) -> bytes:
    try:
        return read_small(path)
    except OSError as exc:
        raise CLIError(f"{what}: {path}: {exc.strerror or exc}") from None
