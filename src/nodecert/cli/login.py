"""``nodecert login`` (a token by the device grant) and ``nodecert dev-approve``.

``nodecert login --issuer URL --client-id ID`` logs in at any OIDC provider that offers the
device authorization grant (RFC 8628: Keycloak, Okta, Auth0, Microsoft Entra); without
``--issuer`` it logs in at the service's own dev issuer (``--server``), whose grants are
approved with ``nodecert dev-approve CODE USER`` on the server's machine. The token goes to
stdout (``export NODECERT_TOKEN=$(nodecert login …)``), the instructions to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from nodecert.cli.common import DEFAULT_SERVER, CLIError, UsageError, local_settings
from nodecert.client import UrllibTransport
from nodecert.client._login import DeviceCode, device_login

__all__ = ["add_login_commands"]

_DEV_CLIENT_ID = "nodecert-cli"


def add_login_commands(sub: Any) -> None:
    """Add ``login`` and ``dev-approve`` to the ``sub`` subparsers."""
    login = sub.add_parser(
        "login",
        help="get a token with the device authorization grant (prints it on stdout)",
        description=(
            "Log in with the OAuth device authorization grant (RFC 8628) and print the token"
            " (the ID token, else the access token): at --issuer with --client-id, or at the"
            " service's dev issuer (--server) when no issuer is given."
        ),
    )
    login.add_argument(
        "--issuer",
        metavar="URL",
        help="the OIDC issuer (its /.well-known/openid-configuration is read)",
    )
    login.add_argument(
        "--client-id", metavar="ID", help="the OAuth client id registered for nodecert's CLI"
    )
    login.add_argument("--scope", default="openid", help="the scope asked for (default openid)")
    login.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("NODECERT_SERVER", DEFAULT_SERVER),
        help=f"the service whose dev issuer to use (default $NODECERT_SERVER or {DEFAULT_SERVER})",
    )
    login.add_argument("--cacert", type=Path, metavar="FILE", help="CA bundle to trust for https")
    login.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds for each request (default 30)",
    )
    login.add_argument(
        "--json", action="store_true", help='print {"token", "tokenType", "expiresIn"}'
    )
    login.set_defaults(handler=_login)

    approve = sub.add_parser(
        "dev-approve",
        help="approve a `nodecert login` at the dev issuer (on the server's machine)",
    )
    approve.add_argument("code", metavar="CODE", help="the user code login printed (BCDF-GHJK)")
    approve.add_argument("user", metavar="USER", nargs="?", help="the user id the token will name")
    approve.add_argument(
        "--subject", metavar="SUBJECT", help="name the user by a provider-style subject instead"
    )
    approve.add_argument("--admin", action="store_true", help="member of the admin group")
    approve.set_defaults(handler=_dev_approve)


def _login(args: argparse.Namespace) -> None:
    if not 0 < args.timeout <= 3600:
        raise UsageError("--timeout: a number of seconds in (0, 3600]")
    if args.issuer is not None:
        if not args.client_id:
            raise UsageError("--client-id: required with --issuer")
        base = _url(args.issuer, "--issuer").rstrip("/")
        configuration = f"{base}/.well-known/openid-configuration"
        client_id = str(args.client_id)
    else:
        configuration = _url(args.server, "--server").rstrip("/") + "/v1/dev/openid-configuration"
        client_id = args.client_id or _DEV_CLIENT_ID
    tokens = device_login(
        UrllibTransport(cafile=args.cacert),
        configuration_url=configuration,
        client_id=client_id,
        scope=args.scope or None,
        timeout=args.timeout,
        announce=_announce,
    )
    if args.json:
        document = {
            "token": tokens.token,
            "tokenType": tokens.token_type,
            "expiresIn": tokens.expires_in,
        }
        print(json.dumps(document))
    else:
        print(tokens.token)


def _announce(code: DeviceCode) -> None:
    if code.verification_uri.startswith("urn:nodecert:dev-approve"):
        line = f"on the server's machine, run: nodecert dev-approve {code.user_code} USER"
    else:
        where = code.verification_uri_complete or code.verification_uri
        line = f"open {where} and enter the code {code.user_code}"
    minutes = max(1, code.expires_in // 60)
    print(f"nodecert: to log in, {line} (within {minutes} min)", file=sys.stderr, flush=True)


def _url(value: str, option: str) -> str:
    if not value.startswith(("http://", "https://")) or not value.isprintable() or " " in value:
        raise CLIError(f"{option}: {value[:100]!r} must be an http:// or https:// URL")
    return value


def _dev_approve(args: argparse.Namespace) -> None:
    from nodecert.support.devicegrants import Approval, DeviceGrants

    if (args.user is None) == (args.subject is None):
        raise UsageError("dev-approve: give USER or --subject SUBJECT (one of them)")
    settings = local_settings()
    if not settings.dev_issuer:
        raise CLIError("dev-approve: NODECERT_OIDC_ISSUER is set, so the dev issuer is off")
    from nodecert.core.identity import user_id_for_subject

    subject = args.user if args.subject is None else args.subject
    user_id = user_id_for_subject(subject)  # Refuse what no token could name, now.
    grants = DeviceGrants(settings.home / "dev-device")
    grants.approve(args.code, Approval(subject=subject, admin=bool(args.admin)))
    role = " as an admin" if args.admin else ""
    print(f"approved {args.code.strip().upper()} for {user_id}{role}")
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)
