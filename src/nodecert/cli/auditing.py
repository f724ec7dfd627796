"""``nodecert audit``: the audit trail as JSON lines, from the service or the local home."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from nodecert.cli.common import CLIError, add_client_options, client_from, local_settings

__all__ = ["add_audit_command"]


def add_audit_command(sub: Any) -> None:
    """Add ``nodecert audit`` to the ``sub`` subparsers."""
    audit = sub.add_parser(
        "audit",
        help="read the audit trail (issuance, renewal, revocation, admin actions) as JSON lines",
        description=(
            "Print audit entries, newest first, one JSON object a line: at, actor, action,"
            " target, userId, nodeId, source, detail. Admins read every entry, users their"
            " own. By default from the service (--server, a token); with --local from the"
            " home in this directory (the server's own machine)."
        ),
    )
    add_client_options(audit)
    audit.add_argument("--user", metavar="USER", help="only entries concerning this user")
    audit.add_argument("--node", metavar="NODE", help="only entries concerning this node")
    audit.add_argument(
        "--action",
        metavar="ACTION",
        help="only this action (certificate.revoke), or a prefix ending in a dot (node.)",
    )
    audit.add_argument(
        "--since", metavar="TIME", help="only entries at or after TIME (2026-12-01T00:00:00Z)"
    )
    audit.add_argument("--until", metavar="TIME", help="only entries before TIME")
    audit.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N entries (1-1000)"
    )
    audit.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="append the lines to FILE (created 0600) instead of printing them",
    )
    audit.add_argument(
        "--local",
        action="store_true",
        help="read the local home's store directly (admin, on the server's machine)",
    )
    audit.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace) -> None:
    if not 1 <= args.limit <= 1000:
        raise CLIError(f"--limit: {args.limit} is not from 1 to 1000")
    entries = _local(args) if args.local else _remote(args)
    if args.output is None:
        _write(entries, sys.stdout)
        return
    try:
        fd = _open_append(args.output)
    except OSError as exc:
        raise CLIError(f"{args.output}: {exc.strerror}") from None
    with fd as out:
        _write(entries, out)


def _remote(args: argparse.Namespace) -> list[dict[str, str]]:
    return client_from(args).audit(
        user=args.user,
        node=args.node,
        action=args.action,
        since=args.since,
        until=args.until,
        limit=args.limit,
    )


def _local(args: argparse.Namespace) -> list[dict[str, str]]:
    from nodecert.bootstrap import build_service
    from nodecert.core.values import Principal
    from nodecert.http.routes import Routes

    service = build_service(local_settings())
    try:
        # The same parsing and answer as GET /v1/audit, as an admin of this home.
        reply = Routes.for_service(service).audit(
            Principal(user_id="cli", is_admin=True),
            user=args.user,
            node=args.node,
            action=args.action,
            since=args.since,
            until=args.until,
            limit=str(args.limit),
        )
    finally:
        service.close()
    return list(reply.body["entries"])


def _write(entries: Iterable[dict[str, str]], out: TextIO) -> None:
    for entry in entries:
        out.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()


def _open_append(path: Path) -> TextIO:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(descriptor, "a", encoding="utf-8")
