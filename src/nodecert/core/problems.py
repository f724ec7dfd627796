"""The wire-error table: every error a caller can see, both ways across the wire.

One row per error class (:data:`WIRE_ERRORS`): its stable ``code`` (the class's), the HTTP
status it is answered with, and what its RFC 9457 problem document carries besides
``type``, ``title``, ``status``, ``detail``, ``code`` and ``instance``: extension members
(``serialNumber``, ``reason``) and headers (``Retry-After``, ``WWW-Authenticate``,
``Allow``). The service renders every problem document with :func:`render` (through
:func:`nodecert.http.contract.problem`, whichever front end answers); the client rebuilds
the error with :func:`parse`, through the class's own constructor, so that an error carries
the same fields on both sides. The tree in :mod:`nodecert.core.errors`' docstring and
``docs/errors.md`` are drawn from this table (a test checks both).

As certbot's ``acme/messages.py`` keeps one table of error codes that the server and the
client both read, this is the one place a wire error is declared: a new error is a class
and a row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodecert.core.decision import AccessDeniedError
from nodecert.core.errors import (
    AlreadyRenewedError,
    AuthenticationError,
    AuthorizationError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    ConflictingInputError,
    CSRError,
    HeadersTooLargeError,
    HostUnavailableError,
    IdempotencyKeyReusedError,
    IdempotentReplayError,
    InvalidIdentifierError,
    InvalidRequestError,
    MalformedRequestError,
    MethodNotAllowedError,
    NodecertError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    QuotaExceededError,
    RequestTimeoutError,
    StoreUnavailableError,
    UnsupportedTransferCodingError,
)

__all__ = [
    "CHALLENGE",
    "PROBLEM_TYPE_BASE",
    "WIRE_ERRORS",
    "Problem",
    "WireError",
    "parse",
    "render",
    "row_of",
    "tree",
]

PROBLEM_TYPE_BASE = "https://nodecert.dev/problems/"
# RFC 6750 section 3: what a 401 asks for.
CHALLENGE = 'Bearer realm="nodecert"'
_MAX_INSTANCE = 200
# What the client keeps of a document: one line each, bounded, so that a hostile or broken
# server cannot flood a terminal or a log.
_MAX_CODE = 64
_MAX_DETAIL = 500
_MAX_FIELD = 200


@dataclass(frozen=True, slots=True)
class WireError:
    """One row of the wire-error table.

    Attributes:
        cls: The error class; its ``code`` and ``title`` are the document's.
        status: The HTTP status the service answers it with.
        summary: What it means, in at most 28 characters (for the tree and the docs).
        members: Extension members of its problem document, by wire name.
        headers: Headers its reply carries (``Retry-After`` always, 1 s unless the error
            says; ``WWW-Authenticate``; ``Allow`` when the error knows the methods).
        relayed: Other statuses that stand for it when a proxy or gateway in front answers
            instead of the service (502 and 504 for an upstream that did not answer).
    """

    cls: type[NodecertError]
    status: int
    summary: str
    members: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    relayed: tuple[int, ...] = ()

    @property
    def code(self) -> str:
        """The stable code (the class's)."""
        return self.cls.code


_RETRY = ("Retry-After",)

# Bases before their subclasses: the first row of a status is the client's class for an
# unknown code with that status.
WIRE_ERRORS: tuple[WireError, ...] = (
    WireError(NodecertError, 500, "unexpected; nothing done"),
    WireError(InvalidRequestError, 400, "bad input"),
    WireError(InvalidIdentifierError, 400, "id not [A-Za-z0-9._-]{1,64}"),
    WireError(CSRError, 400, "CSR malformed, forged, weak"),
    WireError(IdempotencyKeyReusedError, 400, "Idempotency-Key reused"),
    WireError(ConflictingInputError, 400, "body and proxy disagree"),
    WireError(MalformedRequestError, 400, "refused by the HTTP parser"),
    WireError(AuthenticationError, 401, "no valid token", headers=("WWW-Authenticate",)),
    WireError(AuthorizationError, 403, "authenticated, not allowed"),
    WireError(AccessDeniedError, 403, "client certificate refused", members=("reason",)),
    WireError(NotFoundError, 404, "no such certificate or node"),
    WireError(MethodNotAllowedError, 405, "not this method here", headers=("Allow",)),
    WireError(RequestTimeoutError, 408, "request came too slowly"),
    WireError(ConflictError, 409, "clashes with current state"),
    WireError(IdempotentReplayError, 409, "request already made", members=("serialNumber",)),
    WireError(AlreadyRenewedError, 409, "renewed twice (stolen key?)"),
    WireError(PayloadTooLargeError, 413, "body over the size limit"),
    WireError(QuotaExceededError, 429, "rate or count limit reached", headers=_RETRY),
    WireError(HeadersTooLargeError, 431, "request head too large"),
    WireError(ConfigurationError, 500, "service mis-configured"),
    WireError(UnsupportedTransferCodingError, 501, "a coding other than chunked"),
    WireError(
        BackendUnavailableError, 503, "CA cannot answer now", headers=_RETRY, relayed=(502, 504)
    ),
    WireError(StoreUnavailableError, 503, "ledger cannot answer now", headers=_RETRY),
    WireError(OverloadedError, 503, "too many connections", headers=_RETRY),
    WireError(HostUnavailableError, 503, "machine refused a resource", headers=_RETRY),
)

_BY_CLASS = {row.cls: row for row in WIRE_ERRORS}
_BY_CODE = {row.code: row for row in WIRE_ERRORS}
# The first row of each status (and of each relayed one): the most general class.
_BY_STATUS = {status: row for row in reversed(WIRE_ERRORS) for status in (row.status, *row.relayed)}


def row_of(cls: type[NodecertError]) -> WireError:
    """The row of ``cls``, or of its nearest listed base (every error has one: the root's)."""
    for base in cls.__mro__:
        row = _BY_CLASS.get(base)
        if row is not None:
            return row
    return WIRE_ERRORS[0]


@dataclass(frozen=True, slots=True)
class Problem:
    """A rendered problem document: status, JSON body, and the headers it needs."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def render(error: NodecertError, *, instance: str | None = None) -> Problem:
    """The problem document the service answers ``error`` with (RFC 9457)."""
    row = row_of(type(error))
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": row.status,
        "detail": error.detail,
        "code": error.code,
    }
    if instance:
        body["instance"] = instance[:_MAX_INSTANCE]
    fields = error.wire_fields()
    for name in row.members:
        if fields.get(name):
            body[name] = fields[name]
    headers: dict[str, str] = {}
    if "Retry-After" in row.headers or error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after or 1)
    if "WWW-Authenticate" in row.headers:
        headers["WWW-Authenticate"] = CHALLENGE
    for name in row.headers:
        if fields.get(name):
            headers[name] = fields[name]
    return Problem(row.status, body, headers)


def parse(status: int, headers: Mapping[str, str], body: bytes) -> NodecertError:
    """The error a non-2xx reply stands for, built by its class's :meth:`from_wire`.

    Total: any body (not JSON, wrong types, huge values) gives an error, never an
    exception. A known ``code`` names the class; an unknown one keeps its code on the
    status's class (the root's for a status not in the table), so a newer service's error
    is still caught as what its status says.

    Args:
        status: The reply's HTTP status.
        headers: Its headers (names in any case).
        body: Its body.
    """
    document = _document(body)
    code = document.get("code")
    code = code if isinstance(code, str) and _is_code(code) else None
    detail = _line(document.get("detail"), _MAX_DETAIL) or (
        f"HTTP {status} without a problem document"
    )
    lowered = {name.lower(): value for name, value in headers.items()}
    row = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or WIRE_ERRORS[0]
    fields: dict[str, str] = {}
    for name in row.members:
        value = _line(document.get(name), _MAX_FIELD)
        if value:
            fields[name] = value
    for name in row.headers:
        value = _line(lowered.get(name.lower()), _MAX_FIELD)
        if value:
            fields[name] = value
    error = row.cls.from_wire(detail, fields, retry_after=_retry_after(lowered))
    if code and code != error.code:
        error.code = code
    return error


def _document(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_code(value: str) -> bool:
    return 0 < len(value) <= _MAX_CODE and value.isascii() and value.replace("_", "a").isalnum()


def _line(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(value[: limit * 4].split())[:limit] or None


def _retry_after(headers: Mapping[str, str]) -> int | None:
    value = headers.get("retry-after", "").strip()
    # ASCII digits only, and few: str.isdigit() also takes "²", which int() refuses.
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        return None
    return min(int(value), 86_400)


def tree() -> str:
    """The error tree drawn from the table: class, status, code and summary, one a line."""
    lines: list[str] = []

    def draw(row: WireError, lead: str, branch: str) -> None:
        name = f"{lead}{branch}{row.cls.__name__}"
        lines.append(f"{name:<35}{row.status}  {row.code:<28}{row.summary}")
        children = [r for r in WIRE_ERRORS if r.cls.__bases__[0] is row.cls]
        below = lead + ("│   " if branch == "├── " else "    " if branch else "")
        for index, child in enumerate(children):
            draw(child, below, "└── " if index == len(children) - 1 else "├── ")

    draw(WIRE_ERRORS[0], "", "")
    return "\n".join(lines)
