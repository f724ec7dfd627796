"""Where an admin command works: a server (through :mod:`nodecert.client`) or the local store.

With ``--server URL`` (and a token: ``--token`` or ``$NODECERT_TOKEN``) a command goes
through the HTTP API, which works whatever the server's store and CA are (PostgreSQL,
DynamoDB, ACM PCA). With ``--local`` it works on the home's store directly
(``NODECERT_HOME``), through :func:`nodecert.bootstrap.build_administration`, which never
reads the CA key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nodecert.cli.common import DEFAULT_SERVER, CLIError, UsageError, client_from, local_settings
from nodecert.client import Client
from nodecert.core.errors import NodecertError

__all__ = [
    "add_target_options",
    "emit",
    "info_json",
    "iso",
    "on_local_home",
    "record_json",
    "remote_client",
]


def add_target_options(parser: argparse.ArgumentParser, *, server_by_default: bool) -> None:
    """``--server`` or ``--local``, ``--token``, ``--cacert``, ``--timeout`` and ``--json``."""
    where = parser.add_mutually_exclusive_group()
    if server_by_default:
        default = f"$NODECERT_SERVER or {DEFAULT_SERVER}"
        server_help = f"service URL (default {default})"
    else:
        server_help = "service URL: work through its API with an admin token"
    where.add_argument("--server", metavar="URL", help=server_help)
    where.add_argument(
        "--local",
        action="store_true",
        help="work on the local home's store (NODECERT_HOME) instead of a server",
    )
    parser.add_argument("--token", help="bearer token (default $NODECERT_TOKEN)")
    parser.add_argument(
        "--cacert", type=Path, metavar="FILE", help="CA bundle to trust for an https server"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for the server (default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(server_by_default=server_by_default)


def remote_client(args: argparse.Namespace) -> Client | None:
    """The client when the command goes to a server, None for the local store.

    Raises:
        UsageError: ``--token`` or ``--cacert`` without a server.
    """
    if args.local:
        for option in ("token", "cacert"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option}: only with a server, not with --local")
        return None
    if args.server is None:
        if not args.server_by_default:
            for option in ("token", "cacert"):
                if getattr(args, option) is not None:
                    raise UsageError(f"--{option}: only with --server URL")
            return None
        args.server = os.environ.get("NODECERT_SERVER", DEFAULT_SERVER)
    if not 0 < args.timeout <= 3600:
        raise UsageError("--timeout: a number of seconds in (0, 3600]")
    return client_from(args)


def on_local_home(args: argparse.Namespace, run: Callable[[Any], None]) -> None:
    """Run ``run(administration)`` on the local home's store, naming the home it used.

    The home goes to stderr after a success, and into the one error line after a failure.
    """
    from nodecert.bootstrap import build_administration

    settings = local_settings()
    home = settings.home.absolute()
    try:
        administration, close = build_administration(settings)
        try:
            run(administration)
        finally:
            close()
    except NodecertError as exc:
        raise CLIError(f"{exc.detail} (home {home})") from exc
    except CLIError as exc:
        raise CLIError(f"{exc} (home {home})") from exc
    print(f"nodecert: home {home}", file=sys.stderr)


def emit(args: argparse.Namespace, document: object, lines: Sequence[str]) -> None:
    """Print ``document`` as JSON with ``--json``, else ``lines``."""
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        for line in lines:
            print(line)


# nodes add / remove


def record_json(row: Any) -> dict[str, Any]:
    """A ledger row (local store) in the shape the API shows it, as far as we print it."""
    return {
        "serialNumber": row.serial,
        "userId": row.user_id,
        "nodeId": row.node_id,
        "status": row.status.value,
        "revocationReason": row.revocation_reason.value if row.revocation_reason else None,
        "profile": row.profile.value,
        "dnsNames": list(row.dns_names),
        "ipAddresses": list(row.ip_addresses),
    }


def info_json(info: Any) -> dict[str, Any]:
    """A client ``CertificateInfo`` in the same shape as :func:`record_json`."""
    return {
        "serialNumber": info.serial,
        "userId": info.user_id,
        "nodeId": info.node_id,
        "status": info.status,
        "revocationReason": info.revocation_reason,
        "profile": info.profile,
        "dnsNames": list(info.dns_names),
        "ipAddresses": list(info.ip_addresses),
    }


def iso(value: Any) -> str:
    """A UTC time as the API writes it (``…Z``)."""
    return str(value.isoformat()).replace("+00:00", "Z")
