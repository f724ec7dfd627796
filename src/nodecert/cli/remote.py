"""The API commands, through :class:`nodecert.client.Client`: ``request``, ``certs``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cryptography import x509

from nodecert.cli.common import CLIError, UsageError, add_client_options, client_from
from nodecert.cli.output import OutputFile, check_files, write_outputs
from nodecert.cli.pkcs12 import p12_bytes, p12_password
from nodecert.client._files import read_small
from nodecert.core.identity import serial_for_display, validate_id

__all__ = ["add_remote_commands"]


def add_remote_commands(sub: Any) -> None:
    """Add the API commands to the ``sub`` subparsers."""
    request = sub.add_parser("request", help="get a certificate for one of your nodes")
    request.add_argument("node", metavar="NODE", help="one of your nodes")
    add_client_options(request)
    request.add_argument(
        "--key-type", help="rsa-2048 (default), rsa-3072, rsa-4096, ec-p256, ec-p384"
    )
    request.add_argument("--csr", type=Path, metavar="FILE", help="send this CSR, keep your key")
    request.add_argument(
        "--validity-days", type=int, metavar="N", help="days of validity (default: the service's)"
    )
    request.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where NODE.crt, NODE.key (0600) and ca.crt go (default .)",
    )
    request.add_argument("--force", action="store_true", help="replace existing files")
    files = request.add_argument_group("file names (default: in --out)")
    files.add_argument(
        "--cert-file", type=Path, metavar="FILE", help="the certificate (default OUT/NODE.crt)"
    )
    files.add_argument(
        "--key-file", type=Path, metavar="FILE", help="the private key, 0600 (default OUT/NODE.key)"
    )
    files.add_argument(
        "--chain-file", type=Path, metavar="FILE", help="the CA chain (default OUT/ca.crt)"
    )
    files.add_argument(
        "--fullchain-file",
        type=Path,
        metavar="FILE",
        help="also write the certificate followed by the CA chain (what nginx and most servers"
        " take)",
    )
    files.add_argument(
        "--p12",
        type=Path,
        metavar="FILE",
        help="also write a PKCS#12 file (key, certificate, chain; AES-256), 0600",
    )
    files.add_argument(
        "--p12-password-file",
        type=Path,
        metavar="FILE",
        help="the PKCS#12 password is its first line (default: asked on the terminal)",
    )
    request.add_argument("--json", action="store_true", help="print the result as JSON")
    request.set_defaults(handler=_request)

    certs = sub.add_parser("certs", help="list your certificates")
    add_client_options(certs)
    certs.add_argument("--node", metavar="NODE", help="only the certificates of this node")
    certs.add_argument(
        "--status",
        choices=["active", "superseded", "revoked", "expired"],
        help="only those in this status: active, superseded, revoked or expired",
    )
    certs.add_argument("--json", action="store_true", help="print JSON")
    certs.set_defaults(handler=_certs)


def _request(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="NODE")
    csr = None
    if args.csr is not None:
        try:
            csr = read_small(args.csr).decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"{args.csr}: {getattr(exc, 'strerror', None) or 'not text'}") from None
        _check_csr(args.csr, csr)
    if args.p12_password_file is not None and args.p12 is None:
        raise UsageError("--p12-password-file: only with --p12 FILE")
    if csr is not None and (args.p12 is not None or args.key_file is not None):
        option = "--p12" if args.p12 is not None else "--key-file"
        raise UsageError(f"{option}: not with --csr (the key is yours and stays with you)")
    # Everything that can fail is asked before the service issues anything.
    password = p12_password(args.p12_password_file) if args.p12 is not None else None
    client = client_from(args)
    wanted: dict[str, Path] = {
        "certificate": args.cert_file or args.out / f"{node}.crt",
        "chain": args.chain_file or args.out / "ca.crt",
    }
    if csr is None:
        wanted["privateKey"] = args.key_file or args.out / f"{node}.key"
    if args.fullchain_file is not None:
        wanted["fullChain"] = args.fullchain_file
    if args.p12 is not None:
        wanted["pkcs12"] = args.p12
    if len(set(wanted.values())) != len(wanted):
        raise UsageError("the output files must be different files")
    chain: list[str] = []

    def same_chain(path: Path) -> bool:
        # An existing chain file with the service's chain is no conflict (one per directory).
        if path != wanted["chain"]:
            return False
        if not chain:
            chain.append(client.ca_chain())
        return read_small(path) == chain[0].encode()

    check_files(list(wanted.values()), force=args.force, unchanged=same_chain)
    issued = client.issue(node, key_type=args.key_type, csr=csr, validity_days=args.validity_days)
    if issued.private_key is not None and csr is not None:
        raise CLIError("the service sent a private key for a CSR request; nothing written")
    contents: dict[str, OutputFile] = {
        "certificate": OutputFile(wanted["certificate"], issued.certificate.encode()),
        "chain": OutputFile(wanted["chain"], issued.chain.encode()),
    }
    if "privateKey" in wanted:
        if issued.private_key is None:
            raise CLIError("the service sent no private key; nothing written")
        key = issued.private_key.encode()
        contents["privateKey"] = OutputFile(wanted["privateKey"], key, 0o600)
    if "fullChain" in wanted:
        full = (issued.certificate.rstrip("\n") + "\n" + issued.chain).encode()
        contents["fullChain"] = OutputFile(wanted["fullChain"], full)
    if password is not None and issued.private_key is not None:
        data = p12_bytes(
            certificate_pem=issued.certificate,
            key_pem=issued.private_key,
            chain_pem=issued.chain,
            password=password,
            name=node,
        )
        contents["pkcs12"] = OutputFile(wanted["pkcs12"], data, 0o600)
    write_outputs(list(contents.values()), issued=f"serial {issued.serial}")
    if args.json:
        document = {
            "serialNumber": issued.serial,
            "nodeId": node,
            "userId": issued.user_id,
            "notBefore": _time(issued.not_before.isoformat()),
            "notAfter": _time(issued.not_after.isoformat()),
            "files": {what: str(item.path) for what, item in contents.items()},
        }
        print(json.dumps(document, indent=2))
        return
    print(
        f"issued serial {serial_for_display(issued.serial)} for node {node}, valid until"
        f" {_time(issued.not_after.isoformat())}"
    )
    for item in contents.values():
        print(f"wrote {item.path}" + (" (mode 0600)" if item.mode == 0o600 else ""))


def _check_csr(path: Path, text: str) -> None:
    """Refuse, before anything is sent, a file that is no CSR (a private key above all)."""
    if "PRIVATE KEY-----" in text:
        raise CLIError(
            f"--csr: {path} is a private key, not a certificate request; nothing was sent"
            " (make a CSR with `openssl req -new -key KEY -subj /CN=x`)"
        )
    try:
        x509.load_pem_x509_csr(text.encode())
    except ValueError:
        raise CLIError(f"--csr: {path} is not a PEM certificate request") from None


def _certs(args: argparse.Namespace) -> None:
    node = None if args.node is None else validate_id(args.node, field="--node")
    rows = client_from(args).certificates(node_id=node, status=args.status)
    if args.json:
        print(json.dumps([_row_json(row) for row in rows], indent=2))
        return
    for row in rows:
        print(
            f"{serial_for_display(row.serial)}\t{row.node_id}\t{row.status}"
            f"\t{_time(row.not_after.isoformat())}"
        )


def _row_json(row: Any) -> dict[str, Any]:
    return {
        "serialNumber": row.serial,
        "userId": row.user_id,
        "nodeId": row.node_id,
        "keyType": row.key_type,
        "status": row.status,
        "notBefore": _time(row.not_before.isoformat()),
        "notAfter": _time(row.not_after.isoformat()),
        "fingerprintSha256": row.fingerprint_sha256,
        "createdAt": _time(row.created_at.isoformat()),
        "revokedAt": _time(row.revoked_at.isoformat()) if row.revoked_at else None,
        "revocationReason": row.revocation_reason,
        "renewedFrom": row.renewed_from,
        "profile": row.profile,
        "dnsNames": list(row.dns_names),
        "ipAddresses": list(row.ip_addresses),
    }


def _time(text: str) -> str:
    return text.replace("+00:00", "Z")
