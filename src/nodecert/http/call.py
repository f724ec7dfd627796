"""One request as a route reads it, whichever front end it came through.

The FastAPI app, its direct route and the Lambda handler each turn their request into a
:class:`Call` (headers as anything with ``getlist``: Starlette's ``Headers``, or the Lambda
event's), so a Bearer token is read, and a header sent twice is refused, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from nodecert.core.errors import AuthenticationError, InvalidRequestError
from nodecert.core.values import Principal

__all__ = ["Call", "HeaderSource", "bearer_token", "single_header"]


class HeaderSource(Protocol):
    """A request's headers: every value of a name, compared without regard to case."""

    def getlist(self, key: str) -> list[str]:
        """Every value sent for ``key``, in order (none: an empty list)."""
        ...


@dataclass(frozen=True, slots=True)
class Call:
    """What a route reads of one request.

    Attributes:
        headers: The request's headers.
        body: The body (empty for a route that reads none).
        params: The path template's parameters by name (``{"nodeId": "n1"}``).
        query: The query parameters (each sent once: a repeat is refused before).
        caller: Who the front end authenticated, for a route that needs it.
        peer: The address of the connection's other end, when the front end knows it.
    """

    headers: HeaderSource
    body: bytes = b""
    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    caller: Principal | None = None
    peer: str | None = None

    @property
    def principal(self) -> Principal:
        """The authenticated caller.

        Raises:
            AuthenticationError: the front end authenticated nobody.
        """
        if self.caller is None:
            raise AuthenticationError("Authorization: a Bearer token is required")
        return self.caller

    def header(self, name: str) -> str | None:
        """A header that may appear once (see :func:`single_header`)."""
        return single_header(self.headers, name)

    def first(self, name: str) -> str | None:
        """The first value of a header, if any."""
        values = self.headers.getlist(name)
        return values[0] if values else None


def single_header(headers: HeaderSource, name: str) -> str | None:
    """The value of a header that may appear once (``Authorization``, ``Idempotency-Key``).

    RFC 9110 section 5.3: such a field sent twice is invalid. Which copy a proxy in front
    checked is unknown, so none is taken.

    Raises:
        AuthenticationError: ``Authorization`` sent more than once.
        InvalidRequestError: any other header sent more than once.
    """
    values = headers.getlist(name)
    if len(values) > 1:
        error = AuthenticationError if name.lower() == "authorization" else InvalidRequestError
        raise error(f"{name}: sent more than once")
    return values[0] if values else None


def bearer_token(authorization: str | None, *, what: str = "token") -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Args:
        authorization: The header's value, None when it was not sent.
        what: What the token is, for the error (``token``, ``renewal token``).

    Raises:
        AuthenticationError: no header, another scheme, or no token after the scheme.
    """
    if not authorization:
        raise AuthenticationError(f"Authorization: a Bearer {what} is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(f"Authorization: expected 'Bearer <{what}>'")
    return token.strip()
