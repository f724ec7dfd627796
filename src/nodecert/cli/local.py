"""Commands on the server's own home: ``serve``, ``init``, ``dev-token``, ``nodes``, ``inspect``."""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from nodecert.cli.common import CLIError, cli_actor, cli_admin, local_settings
from nodecert.cli.output import OutputFile, check_outputs, write_outputs
from nodecert.client._files import read_small
from nodecert.core.errors import ConflictError, NodecertError
from nodecert.core.identity import Identity, format_serial, validate_id

__all__ = ["add_local_commands"]

# A dev token is a bearer credential for anyone who holds it; a week covers any test run.
_MAX_DEV_TOKEN_LIFETIME_S = 7 * 24 * 3600


def add_local_commands(sub: Any) -> None:
    """Add the local commands to the ``sub`` subparsers."""
    serve = sub.add_parser("serve", help="run the service (NODECERT_* settings)")
    serve.set_defaults(handler=_serve)

    init = sub.add_parser("init", help="create the home (CA, ledger, dev issuer) and exit")
    init.set_defaults(handler=_init)

    token = sub.add_parser("dev-token", help="print a token from the embedded dev issuer")
    token.add_argument("user", metavar="USER")
    token.add_argument("--admin", action="store_true", help="member of the admin group")
    token.add_argument(
        "--lifetime", type=int, default=3600, help="seconds (default 3600, at most 604800: 7 days)"
    )
    token.set_defaults(handler=_dev_token)

    nodes = sub.add_parser("nodes", help="the node directory of the local store")
    nodes_sub = nodes.add_subparsers(metavar="ACTION", required=True)
    add = nodes_sub.add_parser("add", help="register (or, with --transfer, transfer) a node")
    add.add_argument("node", metavar="NODE")
    add.add_argument("--owner", required=True, metavar="USER")
    add.add_argument(
        "--transfer",
        action="store_true",
        help="give an existing node to another owner, revoking its certificates",
    )
    add.set_defaults(handler=_nodes_add)
    listing = nodes_sub.add_parser("list", help="list nodes")
    listing.add_argument("--owner", metavar="USER")
    listing.set_defaults(handler=_nodes_list)
    node_cert = nodes_sub.add_parser(
        "certificate", help="issue the node's own server certificate (local CA and store)"
    )
    node_cert.add_argument("node", metavar="NODE")
    node_cert.add_argument(
        "--dns",
        action="append",
        required=True,
        metavar="HOST",
        help="a host name the node serves under (repeatable)",
    )
    node_cert.add_argument("--key-type", default="ec-p256", help="default ec-p256")
    node_cert.add_argument("--out", type=Path, default=Path("."), metavar="DIR")
    node_cert.add_argument("--force", action="store_true", help="replace existing files")
    node_cert.set_defaults(handler=_nodes_certificate)
    remove = nodes_sub.add_parser("remove", help="remove a node, revoking its certificates")
    remove.add_argument("node", metavar="NODE")
    remove.set_defaults(handler=_nodes_remove)

    inspect = sub.add_parser("inspect", help="show a certificate's identity and validity")
    inspect.add_argument("file", type=Path, metavar="FILE")
    inspect.set_defaults(handler=_inspect)


def _serve(_args: argparse.Namespace) -> None:
    from nodecert.bootstrap import build_service, settings_from_environment
    from nodecert.server.serve import run

    settings = settings_from_environment()
    # Create (or unlock) the CA and the store once, before workers start, so that a
    # configuration mistake is one clear line instead of a crash in every worker.
    build_service(settings).close()

    def announce() -> None:
        scheme = "https" if settings.tls_cert is not None else "http"
        where = f"{scheme}://{settings.host}:{settings.port}"
        line = f"serving on {where} (data in {settings.home})"
        if settings.log_format == "json":
            from nodecert.support.logs import JSONFormatter

            record = logging.LogRecord("nodecert", logging.INFO, __file__, 0, line, None, None)
            print(JSONFormatter().format(record), file=sys.stderr)
        else:
            print(f"nodecert: {line}", file=sys.stderr)

    run(settings, on_listening=announce)


def _init(_args: argparse.Namespace) -> None:
    from nodecert.bootstrap import build_service, settings_from_environment

    settings = settings_from_environment()
    existed = settings.home.is_dir()
    build_service(settings).close()
    state = "already existed; checked" if existed else "created"
    print(f"nodecert: home {settings.home.absolute()} {state}", file=sys.stderr)


def _dev_token(args: argparse.Namespace) -> None:
    from nodecert.verifiers.devissuer import DevIssuer

    settings = local_settings()
    if not settings.dev_issuer:
        raise CLIError("dev-token: NODECERT_OIDC_ISSUER is set, so the dev issuer is off")
    if not 1 <= args.lifetime <= _MAX_DEV_TOKEN_LIFETIME_S:
        raise CLIError(
            f"--lifetime: must be between 1 and {_MAX_DEV_TOKEN_LIFETIME_S} seconds (7 days)"
        )
    if not (settings.home / "dev-issuer.key").exists():
        raise CLIError(
            f"dev-token: no dev issuer key in {settings.home.absolute()}: run `nodecert init`"
        )
    issuer = DevIssuer.open_or_create(settings.home)
    group = settings.admin_group if args.admin else None
    print(issuer.mint(args.user, admin_group=group, lifetime_s=args.lifetime))
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)


def _admin(handler: Callable[[argparse.Namespace, Any], None]) -> Callable[..., None]:
    """Run an admin command on the local home's service, naming the home it used.

    The home goes to stderr after a success, and into the one error line after a failure
    (errors stay one line), so a command run against the wrong home says so.
    """

    def run(args: argparse.Namespace) -> None:
        from nodecert.bootstrap import build_service

        settings = local_settings()
        home = settings.home.absolute()
        try:
            handler(args, build_service(settings))
        except NodecertError as exc:
            raise CLIError(f"{exc.detail} (home {home})") from exc
        except CLIError as exc:
            raise CLIError(f"{exc} (home {home})") from exc
        print(f"nodecert: home {home}", file=sys.stderr)

    return run


@_admin
def _nodes_add(args: argparse.Namespace, service: Any) -> None:
    try:
        change = service.administration.put_node(
            cli_admin(), args.node, args.owner, transfer=args.transfer, actor=cli_actor()
        )
    except ConflictError as exc:
        if args.transfer:
            raise
        raise CLIError(f"{exc.detail} (--transfer)") from exc
    record = change.record
    print(f"{record.node_id}\t{record.owner}")
    if change.transferred:
        print(
            f"transferred {record.node_id} from {change.previous_owner} to {record.owner}:"
            f" revoked {change.revoked} certificate(s)"
        )
    elif change.revoked:
        print(f"revoked {change.revoked} certificate(s) left from a former owner")


@_admin
def _nodes_list(args: argparse.Namespace, service: Any) -> None:
    owner = None if args.owner is None else validate_id(args.owner, field="owner")
    for record in service.administration.nodes.list_nodes(owner=owner):
        print(f"{record.node_id}\t{record.owner}\t{record.created_at.isoformat()}")


@_admin
def _nodes_certificate(args: argparse.Namespace, service: Any) -> None:
    authority = service.authority
    node = validate_id(args.node, field="NODE")
    names = [f"{node}-server.crt", f"{node}-server.key", "ca.crt"]
    chain = authority.ca_chain_pem()
    crt, key, ca = check_outputs(
        args.out,
        names,
        force=args.force,
        unchanged=lambda path: path.name == "ca.crt" and read_small(path) == chain.encode(),
    )
    issued = authority.issue_node_certificate(
        cli_admin(),
        node,
        dns_names=list(args.dns),
        key_type=args.key_type,
        request_id=uuid.uuid4().hex,
    )
    serial = issued.record.serial
    write_outputs(
        [
            OutputFile(crt, issued.certificate_pem.encode()),
            OutputFile(key, issued.private_key_pem.encode(), 0o600),
            OutputFile(ca, issued.chain_pem.encode()),
        ],
        issued=f"serial {serial}",
    )
    print(f"issued node certificate {serial} for {node} ({', '.join(args.dns)})")
    print(f"wrote {crt}\nwrote {key} (mode 0600)\nwrote {ca}")


@_admin
def _nodes_remove(args: argparse.Namespace, service: Any) -> None:
    revoked = service.administration.delete_node(cli_admin(), args.node, actor=cli_actor())
    print(f"removed {args.node}: revoked {revoked} certificate(s)")


def _inspect(args: argparse.Namespace) -> None:
    try:
        certificate = x509.load_pem_x509_certificate(read_small(args.file))
    except OSError as exc:
        raise CLIError(f"{args.file}: {exc.strerror}") from None
    except ValueError:
        raise CLIError(f"{args.file}: not a PEM certificate") from None
    try:
        identity = Identity.from_certificate(certificate)
        who = f"user={identity.user_id} node={identity.node_id}"
    except NodecertError as exc:
        who = f"(no nodecert identity: {exc.detail})"
    print(f"identity:    {who}")
    print(f"subject:     {certificate.subject.rfc4514_string()}")
    print(f"issuer:      {certificate.issuer.rfc4514_string()}")
    print(f"serial:      {format_serial(certificate.serial_number)}")
    print(f"not before:  {certificate.not_valid_before_utc.isoformat()}")
    print(f"not after:   {certificate.not_valid_after_utc.isoformat()}")
