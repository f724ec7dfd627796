"""``nodecert revoke`` and ``nodecert revoke-all``, on a server (default) or the local store."""

from __future__ import annotations

import argparse
from typing import Any

from nodecert.cli.common import cli_actor, cli_admin
from nodecert.cli.targets import (
    add_target_options,
    emit,
    info_json,
    on_local_home,
    record_json,
    remote_client,
)
from nodecert.core.identity import serial_for_display, validate_id
from nodecert.core.values import RevocationReason

__all__ = ["add_revoke_commands"]

_REASONS = [reason.value for reason in RevocationReason]


def add_revoke_commands(sub: Any) -> None:
    """Add ``revoke`` and ``revoke-all`` to the ``sub`` subparsers."""
    revoke = sub.add_parser("revoke", help="revoke a certificate (yours, or any as an admin)")
    revoke.add_argument("serial", metavar="SERIAL", help="hex serial number (colons allowed)")
    revoke.add_argument(
        "--reason",
        default="unspecified",
        choices=_REASONS,
        metavar="REASON",
        help=f"RFC 5280 reason: {', '.join(_REASONS)} (default unspecified)",
    )
    add_target_options(revoke, server_by_default=True)
    revoke.set_defaults(handler=_revoke)

    revoke_all = sub.add_parser(
        "revoke-all", help="revoke every live certificate of a node or of a user"
    )
    which = revoke_all.add_mutually_exclusive_group(required=True)
    which.add_argument("--node", metavar="NODE", help="every certificate of this node")
    which.add_argument("--user", metavar="USER", help="every certificate of this user")
    revoke_all.add_argument(
        "--reason",
        default="unspecified",
        choices=_REASONS,
        metavar="REASON",
        help=f"RFC 5280 reason: {', '.join(_REASONS)} (default unspecified)",
    )
    add_target_options(revoke_all, server_by_default=True)
    revoke_all.set_defaults(handler=_revoke_all)


def _revoke(args: argparse.Namespace) -> None:
    client = remote_client(args)
    if client is None:
        reason = RevocationReason(args.reason)

        def run(admin: Any) -> None:
            row = admin.revoke(cli_admin(), args.serial, reason, actor=cli_actor())
            _print_revoked(args, [record_json(row)], one=True)

        on_local_home(args, run)
        return
    info = client.revoke(args.serial, reason=args.reason)
    _print_revoked(args, [info_json(info)], one=True)


def _revoke_all(args: argparse.Namespace) -> None:
    node = None if args.node is None else validate_id(args.node, field="--node")
    user = None if args.user is None else validate_id(args.user, field="--user")
    client = remote_client(args)
    if client is None:
        reason = RevocationReason(args.reason)

        def run(admin: Any) -> None:
            rows = admin.revoke_all(
                cli_admin(), node_id=node, user_id=user, reason=reason, actor=cli_actor()
            )
            _print_revoked(args, [record_json(r) for r in rows])

        on_local_home(args, run)
        return
    infos = client.revoke_all(node_id=node, user_id=user, reason=args.reason)
    _print_revoked(args, [info_json(info) for info in infos])


def _print_revoked(
    args: argparse.Namespace, rows: list[dict[str, Any]], *, one: bool = False
) -> None:
    if one:
        row = rows[0]
        emit(
            args,
            row,
            [f"revoked {serial_for_display(row['serialNumber'])} ({row['revocationReason']})"],
        )
        return
    lines = [f"revoked {len(rows)} certificate(s)"]
    lines += [
        f"{serial_for_display(r['serialNumber'])}\t{r['userId']}\t{r['nodeId']}" for r in rows
    ]
    emit(args, rows, lines)
