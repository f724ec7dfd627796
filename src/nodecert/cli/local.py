"""Commands on the server's own home: ``serve``, ``init``, ``dev-token``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from nodecert.cli.common import CLIError, UsageError, local_settings
from nodecert.core.identity import user_id_for_subject

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
    token.add_argument(
        "user", metavar="USER", nargs="?", help="the user id the token names (its sub)"
    )
    token.add_argument(
        "--subject",
        metavar="SUBJECT",
        help="name the user by a provider-style subject instead (auth0|…, an email), in the"
        " claim NODECERT_USER_ID_CLAIM says: its user id is the mapped one",
    )
    token.add_argument("--admin", action="store_true", help="member of the admin group")
    token.add_argument(
        "--lifetime", type=int, default=3600, help="seconds (default 3600, at most 604800: 7 days)"
    )
    token.add_argument(
        "--json", action="store_true", help='print {"token", "userId", "admin", "lifetime"}'
    )
    token.set_defaults(handler=_dev_token)


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

    if (args.user is None) == (args.subject is None):
        raise UsageError("dev-token: give USER or --subject SUBJECT (one of them)")
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
    subject = args.user if args.subject is None else args.subject
    user_id = user_id_for_subject(subject)
    # The claims where this service reads the user and the admin role (docs/configuration.md).
    extra: dict[str, object] = {settings.user_id_claim: subject}
    group = settings.admin_group if args.admin else None
    if group is not None and settings.admin_claim is not None:
        extra[settings.admin_claim] = [group]
        group = None
    issuer = DevIssuer.open_or_create(settings.home)
    minted = issuer.mint(user_id, admin_group=group, lifetime_s=args.lifetime, extra=extra)
    if args.json:
        document = {
            "token": minted,
            "userId": user_id,
            "admin": bool(args.admin),
            "lifetime": args.lifetime,
        }
        print(json.dumps(document))
    else:
        print(minted)
    print(f"nodecert: home {settings.home.absolute()}", file=sys.stderr)
