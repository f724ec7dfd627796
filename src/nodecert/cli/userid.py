"""``nodecert user-id SUBJECT``: the user id nodecert makes of an identity provider's subject.

Users and admins need it to name a user whose subject is not an id already (Auth0's
``auth0|…``, an email address): ``nodecert nodes add NODE --owner $(nodecert user-id …)``.
The rule is :func:`nodecert.core.identity.user_id_for_subject`; this command runs it
offline, without a server or a home.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nodecert.core.identity import user_id_for_subject

__all__ = ["add_user_id_command"]


def add_user_id_command(sub: Any) -> None:
    """Add ``user-id`` to the ``sub`` subparsers."""
    parser = sub.add_parser(
        "user-id",
        help="print the user id of an identity provider's subject (offline)",
        description=(
            "Print the user id nodecert uses for SUBJECT, the value of the user id claim"
            " (NODECERT_USER_ID_CLAIM, 'sub' by default). A subject made of 1-64 characters"
            " from A-Z a-z 0-9 . _ - (not only dots, not starting with 'sha256.') is its own"
            " id; any other maps to 'sha256.' and the lower-case unpadded base32 of its"
            " UTF-8 SHA-256."
        ),
    )
    parser.add_argument("subject", metavar="SUBJECT", help="the subject, as the token says it")
    parser.add_argument(
        "--json", action="store_true", help='print {"subject", "userId", "mapped"} as JSON'
    )
    parser.set_defaults(handler=_user_id)


def _user_id(args: argparse.Namespace) -> None:
    user_id = user_id_for_subject(args.subject)
    if args.json:
        document = {"subject": args.subject, "userId": user_id, "mapped": user_id != args.subject}
        print(json.dumps(document))
        return
    print(user_id)
