"""``nodecert login``: a token from your identity provider, for ``NODECERT_TOKEN``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from nodecert.cli.common import DEFAULT_SERVER, CLIError
from nodecert.client import login

__all__ = ["add_login_command"]

# The nodecert dev issuer's client id (the audience of the tokens it mints).
_DEV_CLIENT_ID = "nodecert"


def add_login_command(sub: Any) -> None:
    """Add ``nodecert login`` to the ``sub`` subparsers."""
    parser = sub.add_parser(
        "login",
        help="sign in with your identity provider and print a token",
        description=(
            "Sign in with the OAuth 2.0 authorization code flow and PKCE to a loopback"
            " redirect (RFC 8252), as native apps do, and print the token on stdout:"
            " export NODECERT_TOKEN=$(nodecert login --issuer URL --client-id ID). The"
            " provider's app client must be public (no secret) and allow the redirect"
            " http://127.0.0.1/callback on any port. Without --issuer, signs in at the"
            " service's development issuer. The token is printed, never stored."
        ),
    )
    parser.add_argument(
        "--issuer",
        metavar="URL",
        help="the provider's issuer URL (default: the dev issuer of --server)",
    )
    parser.add_argument(
        "--client-id",
        metavar="ID",
        help=f"the app client's id (default with the dev issuer: {_DEV_CLIENT_ID})",
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("NODECERT_SERVER", DEFAULT_SERVER),
        help=f"service URL, for its dev issuer (default $NODECERT_SERVER or {DEFAULT_SERVER})",
    )
    parser.add_argument("--scope", default="openid", help="scopes to ask for (default openid)")
    parser.add_argument(
        "--access-token",
        action="store_true",
        help="print the access token instead of the ID token",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="only print the URL to open; open no browser"
    )
    parser.add_argument(
        "--port", type=int, default=0, metavar="N", help="loopback port (default: any free one)"
    )
    parser.add_argument(
        "--redirect-host",
        choices=["127.0.0.1", "localhost"],
        default="127.0.0.1",
        help="the redirect's host name (Amazon Cognito accepts only localhost)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, metavar="SECONDS", help="default 300"
    )
    parser.add_argument("--cacert", type=Path, help="CA bundle to trust for an https provider")
    parser.set_defaults(handler=_login)


def _login(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port: {args.port} is not a TCP port")
    if not 1 <= args.timeout <= 3600:
        raise CLIError("--timeout: from 1 to 3600 seconds")
    issuer = args.issuer or str(args.server).rstrip("/") + "/dev-issuer"
    client_id = args.client_id or (_DEV_CLIENT_ID if args.issuer is None else None)
    if client_id is None:
        raise CLIError("--client-id: required with --issuer (the provider's app client id)")

    def show(url: str) -> None:
        print(f"nodecert: open this URL to sign in:\n  {url}", file=sys.stderr, flush=True)

    result = login(
        issuer,
        client_id,
        scope=args.scope,
        show=show,
        open_browser=None if args.no_browser else _browser,
        port=args.port,
        redirect_host=args.redirect_host,
        timeout=args.timeout,
        cafile=args.cacert,
    )
    token = result.access_token if args.access_token else result.id_token
    if not token:
        if args.access_token:
            raise CLIError("the provider gave no access token; try without --access-token")
        raise CLIError("the provider gave no ID token; try with --access-token")
    print(token)


def _browser(url: str) -> None:
    import webbrowser

    # No browser here (a server, a container): the printed URL is the way.
    with contextlib.suppress(webbrowser.Error):
        webbrowser.get().open(url)
