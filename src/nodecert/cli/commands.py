"""The ``nodecert`` command line: ``main(argv) -> int``, testable in-process.

Every failure prints one line on stderr (``nodecert: error: ...``) and exits non-zero:
1 for a refused or failed operation, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from nodecert.core.errors import NodecertError
from nodecert.core.files import write_atomic
from nodecert.core.identity import Identity, format_serial, validate_id
from nodecert.core.ports import Principal

__all__ = ["main"]

_DEFAULT_SERVER = "http://127.0.0.1:8080"
_CLI_ADMIN = Principal(user_id="nodecert-cli", is_admin=True)


class CLIError(Exception):
    """A failure to report as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        args.handler(args)
    except (CLIError, NodecertError) as exc:
        print(f"nodecert: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodecert", description="Per-node mutual-TLS certificates on demand."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the service (NODECERT_* settings)")
    serve.set_defaults(handler=_serve)

    token = sub.add_parser("dev-token", help="print a token from the embedded dev issuer")
    token.add_argument("user", metavar="USER")
    token.add_argument("--admin", action="store_true", help="member of the admin group")
    token.add_argument("--lifetime", type=int, default=3600, help="seconds (default 3600)")
    token.set_defaults(handler=_dev_token)

    nodes = sub.add_parser("nodes", help="the node directory of the local store")
    nodes_sub = nodes.add_subparsers(metavar="ACTION")
    add = nodes_sub.add_parser("add", help="register (or transfer) a node")
    add.add_argument("node", metavar="NODE")
    add.add_argument("--owner", required=True, metavar="USER")
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
    node_cert.set_defaults(handler=_nodes_certificate)
    remove = nodes_sub.add_parser("remove", help="remove a node, revoking its certificates")
    remove.add_argument("node", metavar="NODE")
    remove.set_defaults(handler=_nodes_remove)

    request = sub.add_parser("request", help="get a certificate for one of your nodes")
    request.add_argument("node", metavar="NODE")
    _client_options(request)
    request.add_argument(
        "--key-type", help="rsa-2048 (default), rsa-3072, rsa-4096, ec-p256, ec-p384"
    )
    request.add_argument("--csr", type=Path, metavar="FILE", help="send this CSR, keep your key")
    request.add_argument("--validity-days", type=int, metavar="N")
    request.add_argument("--out", type=Path, default=Path("."), metavar="DIR")
    request.set_defaults(handler=_request)

    certs = sub.add_parser("certs", help="list your certificates")
    _client_options(certs)
    certs.add_argument("--node", metavar="NODE")
    certs.add_argument("--status", choices=["active", "revoked", "expired"])
    certs.add_argument("--json", action="store_true", help="print JSON")
    certs.set_defaults(handler=_certs)

    revoke = sub.add_parser("revoke", help="revoke one of your certificates")
    revoke.add_argument("serial", metavar="SERIAL")
    _client_options(revoke)
    revoke.add_argument("--reason", default="unspecified")
    revoke.set_defaults(handler=_revoke)

    renew = sub.add_parser(
        "renew", help="renew a certificate with its own key (no login); --watch to keep it fresh"
    )
    renew.add_argument("--cert", type=Path, required=True, metavar="FILE")
    renew.add_argument("--key", type=Path, required=True, metavar="FILE")
    renew.add_argument(
        "--server",
        default=os.environ.get("NODECERT_SERVER", _DEFAULT_SERVER),
        help=f"service URL (default $NODECERT_SERVER or {_DEFAULT_SERVER})",
    )
    renew.add_argument("--cacert", type=Path, help="CA bundle to trust for an https server")
    renew.add_argument("--audience", help="renewal audience (default from the certificate)")
    renew.add_argument(
        "--watch", action="store_true", help="stay running; renew at 2/3 of each lifetime"
    )
    renew.add_argument(
        "--deploy-hook",
        metavar="COMMAND",
        help="shell command run after each renewal (e.g. 'nginx -s reload'); it sees"
        " RENEWED_CERT, RENEWED_KEY and RENEWED_SERIAL",
    )
    renew.set_defaults(handler=_renew)

    inspect = sub.add_parser("inspect", help="show a certificate's identity and validity")
    inspect.add_argument("file", type=Path, metavar="FILE")
    inspect.set_defaults(handler=_inspect)

    from nodecert.aws.truststore import register as register_aws

    register_aws(sub)  # nodecert aws truststore
    return parser


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("NODECERT_SERVER", _DEFAULT_SERVER),
        help=f"service URL (default $NODECERT_SERVER or {_DEFAULT_SERVER})",
    )
    parser.add_argument("--token", help="bearer token (default $NODECERT_TOKEN)")
    parser.add_argument("--cacert", type=Path, help="CA bundle to trust for an https server")


# Local commands


def _serve(_args: argparse.Namespace) -> None:
    from nodecert.bootstrap import build_service, settings_from_environment
    from nodecert.server.serve import run

    settings = settings_from_environment()
    # Create (or unlock) the CA and the store once, before workers start, so that a
    # configuration mistake is one clear line instead of a crash in every worker.
    build_service(settings).close()

    def announce() -> None:
        where = f"http://{settings.host}:{settings.port}"
        print(f"nodecert: serving on {where} (data in {settings.home})", file=sys.stderr)

    run(settings, on_listening=announce)


def _dev_token(args: argparse.Namespace) -> None:
    from nodecert.bootstrap import settings_from_environment
    from nodecert.verifiers.devissuer import DevIssuer

    settings = settings_from_environment()
    if not settings.dev_issuer:
        raise CLIError("dev-token: NODECERT_OIDC_ISSUER is set, so the dev issuer is off")
    if args.lifetime < 1:
        raise CLIError("--lifetime: must be at least 1 second")
    issuer = DevIssuer.open_or_create(settings.home)
    group = settings.admin_group if args.admin else None
    print(issuer.mint(args.user, admin_group=group, lifetime_s=args.lifetime))


def _nodes_add(args: argparse.Namespace) -> None:
    record = _authority().put_node(_CLI_ADMIN, args.node, args.owner)
    print(f"{record.node_id}\t{record.owner}")


def _nodes_list(args: argparse.Namespace) -> None:
    owner = None if args.owner is None else validate_id(args.owner, field="owner")
    for record in _authority().nodes.list_nodes(owner=owner):
        print(f"{record.node_id}\t{record.owner}\t{record.created_at.isoformat()}")


def _nodes_certificate(args: argparse.Namespace) -> None:
    import uuid

    if not args.out.is_dir():
        raise CLIError(f"--out: {args.out} is not a directory")
    issued = _authority().issue_node_certificate(
        _CLI_ADMIN,
        args.node,
        dns_names=list(args.dns),
        key_type=args.key_type,
        request_id=uuid.uuid4().hex,
    )
    node = issued.record.node_id
    write_atomic(args.out / f"{node}-server.crt", issued.certificate_pem.encode())
    write_atomic(args.out / f"{node}-server.key", issued.private_key_pem.encode(), mode=0o600)
    write_atomic(args.out / "ca.crt", issued.chain_pem.encode())
    print(
        f"issued node certificate {issued.record.serial} for {node}"
        f" ({', '.join(args.dns)}): {args.out / (node + '-server.crt')}"
    )


def _nodes_remove(args: argparse.Namespace) -> None:
    _authority().delete_node(_CLI_ADMIN, args.node)
    print(f"removed {args.node}")


def _authority() -> Any:
    from nodecert.bootstrap import build_service, settings_from_environment

    return build_service(settings_from_environment()).authority


def _renew(args: argparse.Namespace) -> None:
    import time

    from nodecert.client.renew import (
        RenewalClientError,
        RenewalTarget,
        renew_files,
        run_deploy_hook,
        watch,
    )

    target = RenewalTarget(
        cert=args.cert,
        key=args.key,
        server=args.server,
        cacert=args.cacert,
        audience=args.audience,
    )
    hook: str | None = args.deploy_hook

    def deploy(certificate: x509.Certificate) -> None:
        if hook:
            run_deploy_hook(hook, target, certificate)

    try:
        if args.watch:
            watch(target, sleep=time.sleep, after_renewal=deploy)
            return
        renewed = renew_files(target)
    except RenewalClientError as exc:
        raise CLIError(str(exc)) from exc
    print(
        f"renewed: serial {format_serial(renewed.serial_number)}, valid until"
        f" {renewed.not_valid_after_utc.isoformat()}: {args.cert}"
    )
    try:
        deploy(renewed)
    except RenewalClientError as exc:
        # The files are renewed; the exit status still tells a script the hook failed.
        raise CLIError(f"renewed, but {exc}") from exc


def _inspect(args: argparse.Namespace) -> None:
    try:
        certificate = x509.load_pem_x509_certificate(args.file.read_bytes())
    except OSError as exc:
        raise CLIError(f"{args.file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CLIError(f"{args.file}: not a PEM certificate") from exc
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


# Client commands


def _request(args: argparse.Namespace) -> None:
    node = validate_id(args.node, field="NODE")
    body: dict[str, Any] = {"nodeId": node}
    if args.key_type:
        body["keyType"] = args.key_type
    if args.validity_days is not None:
        body["validityDays"] = args.validity_days
    if args.csr is not None:
        try:
            body["csr"] = args.csr.read_text()
        except OSError as exc:
            raise CLIError(f"{args.csr}: {exc.strerror}") from exc
    if not args.out.is_dir():
        raise CLIError(f"--out: {args.out} is not a directory")
    issued = _call(args, "POST", "/generate-cert", body)
    write_atomic(args.out / f"{node}.crt", issued["certificate"].encode())
    write_atomic(args.out / "ca.crt", issued["certificateChain"].encode())
    if "privateKey" in issued:
        write_atomic(args.out / f"{node}.key", issued["privateKey"].encode(), mode=0o600)
    print(
        f"issued serial {issued['serialNumber']} for node {node}, valid until"
        f" {issued['notAfter']}: {args.out / (node + '.crt')}"
    )


def _certs(args: argparse.Namespace) -> None:
    query = ["limit=1000"]
    if args.node:
        query.append(f"nodeId={validate_id(args.node, field='--node')}")
    if args.status:
        query.append(f"status={args.status}")
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:  # Every page: the service answers at most 1,000 at a time.
        page_query = query + ([f"cursor={cursor}"] if cursor else [])
        page = _call(args, "GET", "/v1/certificates?" + "&".join(page_query))
        rows += page["certificates"]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['serialNumber']}\t{row['nodeId']}\t{row['status']}\t{row['notAfter']}")


def _revoke(args: argparse.Namespace) -> None:
    row = _call(args, "POST", f"/v1/certificates/{args.serial}/revoke", {"reason": args.reason})
    print(f"revoked {row['serialNumber']} ({row['revocationReason']})")


def _call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    token = args.token or os.environ.get("NODECERT_TOKEN")
    if not token:
        raise CLIError("a token is required: --token or $NODECERT_TOKEN")
    url = args.server.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise CLIError(f"--server: {args.server!r} must start with http:// or https://")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    context = ssl.create_default_context(cafile=args.cacert) if args.cacert else None
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise CLIError(_problem_line(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CLIError(f"cannot reach {args.server}: {reason}") from None


def _problem_line(exc: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(exc.read())
        return f"{problem['detail']} ({problem['code']}, HTTP {exc.code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
