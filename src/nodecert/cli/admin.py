"""Admin commands: ``nodes …``, ``revoke``, ``revoke-all``, on a server or on the local store.

With ``--server URL`` (and an admin token: ``--token`` or ``$NODECERT_TOKEN``) a command
goes through the HTTP API (:mod:`nodecert.client`), which works whatever the server's store
and CA are (PostgreSQL, DynamoDB, ACM PCA). With ``--local`` it works on the home's store
directly (``NODECERT_HOME``). ``nodes`` commands use the local home when no server is named;
``revoke`` and ``revoke-all`` go to the server (``$NODECERT_SERVER``) unless ``--local``.

Only ``nodes certificate`` signs; every other command leaves the CA key alone, so it never
asks for ``NODECERT_CA_PASSPHRASE``. A transfer or a removal names the node's own (server)
certificates it revoked, and says how to issue new ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nodecert.cli.common import (
    DEFAULT_SERVER,
    CLIError,
    UsageError,
    cli_actor,
    cli_admin,
    client_from,
    local_settings,
)
from nodecert.cli.output import OutputFile, check_outputs, write_outputs
from nodecert.client import Client
from nodecert.client._files import read_small
from nodecert.core.errors import ConflictError, NodecertError, NotFoundError
from nodecert.core.identity import serial_for_display, user_id_for_subject, validate_id
from nodecert.core.values import RevocationReason

__all__ = ["add_admin_commands"]

_REASONS = [reason.value for reason in RevocationReason]


def add_admin_commands(sub: Any) -> None:
    """Add ``nodes``, ``revoke`` and ``revoke-all`` to the ``sub`` subparsers."""
    nodes = sub.add_parser(
        "nodes",
        help="the node directory: on a server (--server) or the local home (default)",
        description=(
            "The node directory. With --server URL and an admin token, through the API;"
            " otherwise (or with --local) on the store of the local home (NODECERT_HOME)."
        ),
    )
    nodes_sub = nodes.add_subparsers(metavar="ACTION", required=True)
    add = nodes_sub.add_parser("add", help="register (or, with --transfer, transfer) a node")
    add.add_argument("node", metavar="NODE", help="the node id")
    owner = add.add_mutually_exclusive_group(required=True)
    owner.add_argument("--owner", metavar="USER", help="the owner's user id")
    owner.add_argument(
        "--owner-subject",
        metavar="SUBJECT",
        help="the owner's identity provider subject (auth0|…, an email): its user id is"
        " what `nodecert user-id SUBJECT` prints",
    )
    add.add_argument(
        "--transfer",
        action="store_true",
        help="give an existing node to another owner, revoking its certificates",
    )
    _target_options(add, server_by_default=False)
    add.set_defaults(handler=_nodes_add)

    listing = nodes_sub.add_parser("list", help="list nodes")
    listing.add_argument("--owner", metavar="USER", help="only the nodes of this user")
    _target_options(listing, server_by_default=False)
    listing.set_defaults(handler=_nodes_list)

    node_cert = nodes_sub.add_parser(
        "certificate", help="issue the node's own server certificate (signs: needs the CA)"
    )
    node_cert.add_argument("node", metavar="NODE", help="the node id")
    node_cert.add_argument(
        "--dns",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name the node serves under (repeatable; --dns or --ip at least once)",
    )
    node_cert.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an IP address clients reach the node at (repeatable): an IP subjectAltName",
    )
    node_cert.add_argument(
        "--key-type",
        default="ec-p256",
        help="rsa-2048, rsa-3072, rsa-4096, ec-p256 (default), ec-p384",
    )
    node_cert.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where NODE-server.crt, NODE-server.key (0600) and ca.crt go (default .)",
    )
    node_cert.add_argument("--force", action="store_true", help="replace existing files")
    _target_options(node_cert, server_by_default=False)
    node_cert.set_defaults(handler=_nodes_certificate)

    remove = nodes_sub.add_parser("remove", help="remove a node, revoking its certificates")
    remove.add_argument("node", metavar="NODE", help="the node id")
    _target_options(remove, server_by_default=False)
    remove.set_defaults(handler=_nodes_remove)

    revoke = sub.add_parser("revoke", help="revoke a certificate (yours, or any as an admin)")
    revoke.add_argument("serial", metavar="SERIAL", help="hex serial number (colons allowed)")
    revoke.add_argument(
        "--reason",
        default="unspecified",
        choices=_REASONS,
        metavar="REASON",
        help=f"RFC 5280 reason: {', '.join(_REASONS)} (default unspecified)",
    )
    _target_options(revoke, server_by_default=True)
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
    _target_options(revoke_all, server_by_default=True)
    revoke_all.set_defaults(handler=_revoke_all)


def _target_options(parser: argparse.ArgumentParser, *, server_by_default: bool) -> None:
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


def _remote(args: argparse.Namespace) -> Client | None:
    """The client when the command goes to a server, None for the local store."""
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


def _on_local_home(args: argparse.Namespace, run: Callable[[Any], None]) -> None:
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


def _emit(args: argparse.Namespace, document: object, lines: Sequence[str]) -> None:
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        for line in lines:
            print(line)


# nodes add / remove


def _nodes_add(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="nodeId")
    if args.owner_subject is not None:
        args.owner = user_id_for_subject(args.owner_subject)
    owner = validate_id(args.owner, field="owner")
    client = _remote(args)
    if client is None:
        _on_local_home(args, lambda admin: _report_change(args, _local_put(admin, args)))
        return
    if not args.transfer:
        try:
            current = client.node(node).owner
        except NotFoundError:
            current = None
        if current is not None and current != owner:
            raise CLIError(
                f"nodeId: {node!r} belongs to {current!r}; giving it to {owner!r} is a"
                " transfer, which revokes its certificates: ask for the transfer explicitly"
                " (--transfer)"
            )
    _report_change(args, _change_json(client.assign_node(node, owner=owner)))


def _local_put(admin: Any, args: argparse.Namespace) -> dict[str, Any]:

    try:
        change = admin.put_node(
            cli_admin(), args.node, args.owner, transfer=args.transfer, actor=cli_actor()
        )
    except ConflictError as exc:
        raise CLIError(f"{exc.detail} (--transfer)") from exc
    return {
        "nodeId": change.record.node_id,
        "owner": change.record.owner,
        "previousOwner": change.previous_owner,
        "revoked": change.revoked,
        "revokedNodeCertificates": [_record_json(r) for r in change.node_certificates],
    }


def _nodes_remove(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="nodeId")
    client = _remote(args)
    if client is None:

        def run(admin: Any) -> None:
            removal = admin.remove_node(cli_admin(), node, actor=cli_actor())
            rows = [_record_json(r) for r in removal.node_certificates]
            document = {"nodeId": node, "revoked": removal.revoked, "revokedNodeCertificates": rows}
            _report_change(args, document, removed=True)

        _on_local_home(args, run)
        return
    _report_change(args, _change_json(client.remove_node(node)), removed=True)


def _change_json(change: Any) -> dict[str, Any]:
    """A client ``NodeChange`` in the API's JSON shape (what ``--json`` prints)."""
    return {
        "nodeId": change.node_id,
        "owner": change.owner,
        "previousOwner": change.previous_owner,
        "revoked": change.revoked,
        "revokedNodeCertificates": [
            {
                "serialNumber": row.serial,
                "dnsNames": list(row.dns_names),
                "ipAddresses": list(row.ip_addresses),
                "userId": row.user_id,
            }
            for row in change.node_certificates
        ],
    }


def _report_change(
    args: argparse.Namespace, document: dict[str, Any], *, removed: bool = False
) -> None:
    node, revoked = document["nodeId"], document["revoked"]
    lines: list[str] = []
    if removed:
        lines.append(f"removed {node}: revoked {revoked} certificate(s)")
    else:
        owner, previous = document["owner"], document["previousOwner"]
        lines.append(f"{node}\t{owner}")
        if previous is not None and previous != owner:
            lines.append(
                f"transferred {node} from {previous} to {owner}: revoked {revoked} certificate(s)"
            )
        elif revoked:
            lines.append(f"revoked {revoked} certificate(s) left from a former owner")
    for row in document["revokedNodeCertificates"]:
        names = [str(name) for name in row.get("dnsNames") or []]
        addresses = [str(address) for address in row.get("ipAddresses") or []]
        lines.append(
            f"revoked the node's own server certificate {serial_for_display(row['serialNumber'])}"
            f" ({', '.join(names + addresses) or 'no names'}): the node serves it until it gets a"
            " new one"
        )
        if removed:
            lines.append(f"  {node} is removed: register it again before issuing it a new one")
        else:
            server = f" --server {args.server}" if args.server else ""
            where = "".join(f" --dns {name}" for name in names)
            where += "".join(f" --ip {address}" for address in addresses)
            lines.append(
                f"  issue a new one: nodecert nodes certificate {node}{where or ' --dns HOST'}"
                f"{server}"
            )
    _emit(args, document, lines)


# nodes list


def _nodes_list(args: argparse.Namespace) -> None:
    owner = None if args.owner is None else validate_id(args.owner, field="owner")
    client = _remote(args)
    if client is None:

        def run(admin: Any) -> None:
            rows = [
                {"nodeId": r.node_id, "owner": r.owner, "createdAt": _time(r.created_at)}
                for r in admin.nodes.list_nodes(owner=owner)
            ]
            _print_nodes(args, rows)

        _on_local_home(args, run)
        return
    listed = [
        {"nodeId": n.node_id, "owner": n.owner, "createdAt": _time(n.created_at)}
        for n in client.nodes()
        if owner is None or n.owner == owner
    ]
    _print_nodes(args, listed)


def _print_nodes(args: argparse.Namespace, rows: list[dict[str, str]]) -> None:
    _emit(args, rows, [f"{r['nodeId']}\t{r['owner']}\t{r['createdAt']}" for r in rows])


# nodes certificate (the one admin command that signs)


def _nodes_certificate(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="nodeId")
    if not args.dns and not args.ip:
        raise UsageError("nodes certificate: give --dns HOST or --ip ADDRESS (or both)")
    client = _remote(args)
    names = [f"{node}-server.crt", f"{node}-server.key", "ca.crt"]
    if client is None:
        _local_node_certificate(args, node, names)
        return
    chain = client.ca_chain()
    crt, key, ca = check_outputs(
        args.out,
        names,
        force=args.force,
        unchanged=lambda path: path.name == "ca.crt" and read_small(path) == chain.encode(),
    )
    issued = client.issue_node_certificate(
        node,
        dns_names=list(args.dns),
        ip_addresses=list(args.ip),
        key_type=args.key_type,
        idempotency_key=uuid.uuid4().hex,
    )
    if issued.private_key is None:
        raise CLIError("the service sent no private key; nothing written")
    _write_node_files(
        args,
        node,
        issued.serial,
        (crt, key, ca),
        issued.certificate,
        issued.private_key,
        issued.chain,
    )


def _local_node_certificate(args: argparse.Namespace, node: str, names: list[str]) -> None:
    from nodecert.bootstrap import build_service

    settings = local_settings()
    home = settings.home.absolute()
    try:
        service = build_service(settings)
        try:
            authority = service.authority
            chain = authority.ca_chain_pem()
            crt, key, ca = check_outputs(
                args.out,
                names,
                force=args.force,
                unchanged=lambda p: p.name == "ca.crt" and read_small(p) == chain.encode(),
            )
            issued = authority.issue_node_certificate(
                cli_admin(),
                node,
                dns_names=list(args.dns),
                ip_addresses=list(args.ip),
                key_type=args.key_type,
                request_id=uuid.uuid4().hex,
            )
        finally:
            service.close()
    except NodecertError as exc:
        raise CLIError(f"{exc.detail} (home {home})") from exc
    except CLIError as exc:
        raise CLIError(f"{exc} (home {home})") from exc
    assert issued.private_key_pem is not None  # The service made the key: no CSR here.
    _write_node_files(
        args,
        node,
        issued.record.serial,
        (crt, key, ca),
        issued.certificate_pem,
        issued.private_key_pem,
        issued.chain_pem,
    )
    print(f"nodecert: home {home}", file=sys.stderr)


def _write_node_files(
    args: argparse.Namespace,
    node: str,
    serial: str,
    paths: tuple[Path, Path, Path],
    certificate: str,
    private_key: str,
    chain: str,
) -> None:
    crt, key, ca = paths
    write_outputs(
        [
            OutputFile(crt, certificate.encode()),
            OutputFile(key, private_key.encode(), 0o600),
            OutputFile(ca, chain.encode()),
        ],
        issued=f"serial {serial}",
    )
    document = {
        "serialNumber": serial,
        "nodeId": node,
        "dnsNames": list(args.dns),
        "ipAddresses": list(args.ip),
        "files": {"certificate": str(crt), "privateKey": str(key), "chain": str(ca)},
    }
    _emit(
        args,
        document,
        [
            f"issued node certificate {serial_for_display(serial)} for {node}"
            f" ({', '.join([*args.dns, *args.ip])})",
            f"wrote {crt}",
            f"wrote {key} (mode 0600)",
            f"wrote {ca}",
        ],
    )


# revoke, revoke-all


def _revoke(args: argparse.Namespace) -> None:
    client = _remote(args)
    if client is None:
        reason = RevocationReason(args.reason)

        def run(admin: Any) -> None:
            row = admin.revoke(cli_admin(), args.serial, reason, actor=cli_actor())
            _print_revoked(args, [_record_json(row)], one=True)

        _on_local_home(args, run)
        return
    info = client.revoke(args.serial, reason=args.reason)
    _print_revoked(args, [_info_json(info)], one=True)


def _revoke_all(args: argparse.Namespace) -> None:
    node = None if args.node is None else validate_id(args.node, field="--node")
    user = None if args.user is None else validate_id(args.user, field="--user")
    client = _remote(args)
    if client is None:
        reason = RevocationReason(args.reason)

        def run(admin: Any) -> None:
            rows = admin.revoke_all(
                cli_admin(), node_id=node, user_id=user, reason=reason, actor=cli_actor()
            )
            _print_revoked(args, [_record_json(r) for r in rows])

        _on_local_home(args, run)
        return
    infos = client.revoke_all(node_id=node, user_id=user, reason=args.reason)
    _print_revoked(args, [_info_json(info) for info in infos])


def _record_json(row: Any) -> dict[str, Any]:
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


def _info_json(info: Any) -> dict[str, Any]:
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


def _print_revoked(
    args: argparse.Namespace, rows: list[dict[str, Any]], *, one: bool = False
) -> None:
    if one:
        row = rows[0]
        _emit(
            args,
            row,
            [f"revoked {serial_for_display(row['serialNumber'])} ({row['revocationReason']})"],
        )
        return
    lines = [f"revoked {len(rows)} certificate(s)"]
    lines += [
        f"{serial_for_display(r['serialNumber'])}\t{r['userId']}\t{r['nodeId']}" for r in rows
    ]
    _emit(args, rows, lines)


def _time(value: Any) -> str:
    return str(value.isoformat()).replace("+00:00", "Z")
