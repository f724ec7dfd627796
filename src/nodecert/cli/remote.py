"""The API commands, through :class:`nodecert.client.Client`: ``request``, ``certs``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cryptography import x509

from nodecert.cli.common import CLIError, add_client_options, client_from
from nodecert.cli.output import OutputFile, check_outputs, write_outputs
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
    client = client_from(args)
    names = [f"{node}.crt", "ca.crt"] + ([] if csr is not None else [f"{node}.key"])
    chain: list[str] = []

    def same_chain(path: Path) -> bool:
        # An existing ca.crt with the service's chain is no conflict (one per directory).
        if path.name != "ca.crt":
            return False
        if not chain:
            chain.append(client.ca_chain())
        return read_small(path) == chain[0].encode()

    paths = check_outputs(args.out, names, force=args.force, unchanged=same_chain)
    issued = client.issue(node, key_type=args.key_type, csr=csr, validity_days=args.validity_days)
    files = [
        OutputFile(paths[0], issued.certificate.encode()),
        OutputFile(paths[1], issued.chain.encode()),
    ]
    if issued.private_key is not None:
        if csr is not None:
            raise CLIError("the service sent a private key for a CSR request; nothing written")
        files.append(OutputFile(paths[2], issued.private_key.encode(), 0o600))
    write_outputs(files, issued=f"serial {issued.serial}")
    print(
        f"issued serial {serial_for_display(issued.serial)} for node {node}, valid until"
        f" {_time(issued.not_after.isoformat())}"
    )
    for item in files:
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
    }


def _time(text: str) -> str:
    return text.replace("+00:00", "Z")
