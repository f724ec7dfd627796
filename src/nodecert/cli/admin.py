"""``nodecert nodes …``: the node directory, on a server or on the local store.

With ``--server URL`` and an admin token the commands go through the HTTP API; with
``--local``, or when no server is named, they work on the local home's store (see
:mod:`nodecert.cli.targets`). ``revoke`` and ``revoke-all`` are in
:mod:`nodecert.cli.revoking`.

Only ``nodes certificate`` signs; every other command leaves the CA key alone, so it never
asks for ``NODECERT_CA_PASSPHRASE``. A transfer or a removal names the node's own (server)
certificates it revoked, and says how to issue new ones.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from nodecert.cli.common import CLIError, UsageError, cli_actor, cli_admin, local_settings
from nodecert.cli.output import OutputFile, check_outputs, write_outputs
from nodecert.cli.revoking import add_revoke_commands
from nodecert.cli.targets import (
    add_target_options,
    emit,
    iso,
    on_local_home,
    record_json,
    remote_client,
)
from nodecert.client._files import read_small
from nodecert.core.errors import ConflictError, NodecertError, NotFoundError
from nodecert.core.identity import serial_for_display, user_id_for_subject, validate_id

__all__ = ["add_admin_commands"]


def add_admin_commands(sub: Any) -> None:
    """Add ``nodes`` (and, from :mod:`nodecert.cli.revoking`, ``revoke`` and ``revoke-all``)."""
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
    add_target_options(add, server_by_default=False)
    add.set_defaults(handler=_nodes_add)

    listing = nodes_sub.add_parser("list", help="list nodes")
    listing.add_argument("--owner", metavar="USER", help="only the nodes of this user")
    add_target_options(listing, server_by_default=False)
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
    add_target_options(node_cert, server_by_default=False)
    node_cert.set_defaults(handler=_nodes_certificate)

    remove = nodes_sub.add_parser("remove", help="remove a node, revoking its certificates")
    remove.add_argument("node", metavar="NODE", help="the node id")
    add_target_options(remove, server_by_default=False)
    remove.set_defaults(handler=_nodes_remove)
    add_revoke_commands(sub)


def _nodes_add(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="nodeId")
    if args.owner_subject is not None:
        args.owner = user_id_for_subject(args.owner_subject)
    owner = validate_id(args.owner, field="owner")
    client = remote_client(args)
    if client is None:
        on_local_home(args, lambda admin: _report_change(args, _local_put(admin, args)))
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
        "revokedNodeCertificates": [record_json(r) for r in change.node_certificates],
    }


def _nodes_remove(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="nodeId")
    client = remote_client(args)
    if client is None:

        def run(admin: Any) -> None:
            removal = admin.remove_node(cli_admin(), node, actor=cli_actor())
            rows = [record_json(r) for r in removal.node_certificates]
            document = {"nodeId": node, "revoked": removal.revoked, "revokedNodeCertificates": rows}
            _report_change(args, document, removed=True)

        on_local_home(args, run)
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
    emit(args, document, lines)


# nodes list


def _nodes_list(args: argparse.Namespace) -> None:
    owner = None if args.owner is None else validate_id(args.owner, field="owner")
    client = remote_client(args)
    if client is None:

        def run(admin: Any) -> None:
            rows = [
                {"nodeId": r.node_id, "owner": r.owner, "createdAt": iso(r.created_at)}
                for r in admin.nodes.list_nodes(owner=owner)
            ]
            _print_nodes(args, rows)

        on_local_home(args, run)
        return
    listed = [
        {"nodeId": n.node_id, "owner": n.owner, "createdAt": iso(n.created_at)}
        for n in client.nodes()
        if owner is None or n.owner == owner
    ]
    _print_nodes(args, listed)


def _print_nodes(args: argparse.Namespace, rows: list[dict[str, str]]) -> None:
    emit(args, rows, [f"{r['nodeId']}\t{r['owner']}\t{r['createdAt']}" for r in rows])


# nodes certificate (the one admin command that signs)


def _nodes_certificate(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="nodeId")
    if not args.dns and not args.ip:
        raise UsageError("nodes certificate: give --dns HOST or --ip ADDRESS (or both)")
    client = remote_client(args)
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
    emit(
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
