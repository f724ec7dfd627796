"""``nodecert ca rotate``, ``ca root-crl`` and ``ca prune``: replacing the issuing intermediate.

``ca rotate`` makes a new issuing intermediate and retires the old one (see
:mod:`nodecert.backends.local.rotation`): in one step with the root key, or in two with the
root elsewhere (``--csr-out``, then ``--install`` of what ``ca sign-intermediate`` signed),
onto a key file or a key held in AWS KMS or a PKCS#11 token (:mod:`nodecert.cli.ca_keys`).
``ca root-crl`` has the root revoke the intermediates retired at once
(:mod:`nodecert.backends.local.root_crl`); ``ca prune`` forgets those retired longer ago than
any certificate lives. Keys are read and written with ``NODECERT_CA_PASSPHRASE``; neither a
key nor the passphrase is ever printed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.cli.ca_keys import (
    NextKey,
    add_next_key_options,
    next_key,
    option_for,
    restart_note,
)
from nodecert.cli.common import CLIError, UsageError, local_settings, read_input
from nodecert.core.keyrefs import format_ref

__all__ = ["add_rotation_commands"]

# The longest a root CRL is signed for (its --days).
_MAX_CRL_DAYS = 3650


def add_rotation_commands(ca_sub: Any) -> None:
    """Add ``ca rotate``, ``ca root-crl`` and ``ca prune`` to ``ca_sub``, the ``ca`` actions."""
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
    add_next_key_options(rotate)
    rotate.set_defaults(handler=_rotate)

    root_crl = ca_sub.add_parser(
        "root-crl",
        help="sign the root's CRL: revoke the intermediates retired at once (--retire-now)",
        description=(
            "Sign a CRL with the root key that revokes (keyCompromise) every issuing"
            " intermediate retired at once, and write it to <home>/ca/root.crl (and --out):"
            " relying parties that check TLS against the root alone then refuse the old"
            " intermediate too. Entries of the previous root.crl are kept. Sign it again"
            " before it expires (--days)."
        ),
    )
    root_crl.add_argument(
        "--root-key", type=Path, metavar="PATH", help="the root key, when it is kept offline"
    )
    root_crl.add_argument(
        "--days", type=int, default=365, help="until the next update (default 365, at most 3650)"
    )
    root_crl.add_argument("--out", type=Path, metavar="PATH", help="a copy here (a new file)")
    root_crl.set_defaults(handler=_root_crl)

    prune = ca_sub.add_parser(
        "prune",
        help="stop trusting issuing CAs retired longer ago than any certificate lives",
        description=(
            "Remove the issuing CAs retired more than NODECERT_MAX_VALIDITY_DAYS (plus"
            " NODECERT_RENEW_GRACE_S) ago: every certificate they issued has expired."
        ),
    )
    prune.set_defaults(handler=_prune)


def _rotate(args: argparse.Namespace) -> None:
    from nodecert.backends.local.hierarchy import load_key
    from nodecert.backends.local.home import key_id, locked, read_certificate
    from nodecert.backends.local.rotation import install, rotate

    settings = local_settings()
    directory = settings.home / "ca"
    if not (directory / "ca.crt").exists():
        raise CLIError(f"ca rotate: no local CA in {directory.absolute()}")
    # Every check on the options first: next_key may make a key in a token (never left
    # behind by a refused command).
    elsewhere = args.kms_key_id is not None or args.pkcs11_key_label is not None
    if elsewhere and args.new_root:
        raise UsageError("ca rotate: --new-root makes a key file; not with a key held elsewhere")
    chosen = [args.new_root, args.root_key is not None, args.csr_out is not None, args.install]
    # --install --new-root: the certificate comes with its new root (ACM PCA's).
    with_root = args.new_root and args.install is not None and sum(bool(c) for c in chosen) == 2
    if sum(bool(c) for c in chosen) > 1 and not with_root:
        raise UsageError(
            "ca rotate: --new-root, --root-key, --csr-out and --install are exclusive"
            " (but --install --new-root)"
        )
    if args.csr_out is not None and args.retire_now:
        raise UsageError("ca rotate: --retire-now goes with --install (step 2)")
    if args.csr_out is not None and args.csr_out.exists():
        raise CLIError(f"--csr-out: {args.csr_out} exists already; not replacing it")
    chosen_key = next_key(args, settings)
    if args.csr_out is not None:
        _request_intermediate(args, settings, directory, chosen_key)
        return
    installed: list[x509.Certificate] = []
    if args.install is not None:
        try:
            installed = x509.load_pem_x509_certificates(read_input(args.install, "--install"))
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
                issuing=None if chosen_key is None else chosen_key.signer,
                keys=None if chosen_key is None else chosen_key.keys,
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
                issuing=None if chosen_key is None else chosen_key.signer,
                keys=None if chosen_key is None else chosen_key.keys,
            )
    state = "retired now: its certificates are refused" if args.retire_now else "retiring"
    print(f"issuing CA:  {new.subject.rfc4514_string()} (key id {key_id(new)})")
    print(f"previous:    {old.subject.rfc4514_string()} (key id {key_id(old)}): {state}")
    if args.new_root:
        print(f"new root:    {directory.absolute() / 'root.crt'}: give it to every trust store")
    if chosen_key is not None:
        print(f"issuing key: {format_ref(chosen_key.keys[1])}")
        print(restart_note(chosen_key, retire_now=args.retire_now))
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)


def _root_crl(args: argparse.Namespace) -> None:
    from nodecert.backends.local.hierarchy import load_key
    from nodecert.backends.local.home import locked, write_new_private
    from nodecert.backends.local.root_crl import ROOT_CRL, sign_root_crl

    settings = local_settings()
    directory = settings.home / "ca"
    if not 1 <= args.days <= _MAX_CRL_DAYS:
        raise CLIError(f"--days: must be between 1 and {_MAX_CRL_DAYS}")
    if args.out is not None and args.out.exists():
        raise CLIError(f"--out: {args.out} exists already; not replacing it")
    path = args.root_key if args.root_key is not None else directory / "root.key"
    if not path.exists():
        raise CLIError(
            f"ca root-crl: the root key is not in {directory} (taken offline?): give it with"
            " --root-key PATH"
        )
    root_key = load_key(path, settings.ca_passphrase)
    with locked(directory):
        crl = sign_root_crl(
            directory, root_key=root_key, now=datetime.now(UTC), lifetime=timedelta(days=args.days)
        )
    der = crl.public_bytes(Encoding.DER)
    if args.out is not None:
        write_new_private(args.out, der)
        args.out.chmod(0o644)
    revoked = ", ".join(format(entry.serial_number, "x") for entry in crl) or "none"
    print(f"root CRL:    {directory.absolute() / ROOT_CRL} (revoked intermediates: {revoked})")
    print(f"next update: {crl.next_update_utc.isoformat() if crl.next_update_utc else '-'}")
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)


def _prune(_args: argparse.Namespace) -> None:
    from nodecert.backends.local.home import locked
    from nodecert.backends.local.rotation_files import prune

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


def _request_intermediate(
    args: argparse.Namespace, settings: Any, directory: Path, chosen: NextKey | None
) -> None:
    from nodecert.backends.local.home import locked, write_new_private
    from nodecert.backends.local.rotation import request

    with locked(directory):
        csr = request(
            directory,
            organization=settings.organization,
            key_type=settings.ca_key_type,
            passphrase=settings.ca_passphrase,
            now=datetime.now(UTC),
            issuing=None if chosen is None else chosen.signer,
            key_ref=None if chosen is None else chosen.keys[1],
        )
    write_new_private(args.csr_out, csr)
    args.csr_out.chmod(0o644)
    print(f"wrote {args.csr_out}: sign it with the root (nodecert ca sign-intermediate),")
    again = "" if chosen is None else f" {option_for(chosen.keys[1])}"
    print(f"then: nodecert ca rotate --install <certificate>{again} [--retire-now]")
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)
