"""Fakes for testing code that uses :class:`nodecert.client.Client`, without a server.

:class:`MockTransport` answers every request with a function of yours (as httpx's
``MockTransport``) and records what was sent; :func:`json_response` and
:func:`problem_response` build the answers the real service would give::

    from nodecert.client import Client
    from nodecert.core.errors import NotFoundError
    from nodecert.testing import MockTransport, problem_response

    transport = MockTransport(lambda request: problem_response(NotFoundError("no node 'n9'")))
    client = Client("https://certs.example", token="t", transport=transport)
    # client.node("n9") raises NotFoundError("no node 'n9'")

:class:`UnreachableTransport` fails like a server that is down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from nodecert.client import Request, Response, ServiceUnreachableError
from nodecert.core.errors import NodecertError
from nodecert.http.contract import problem

__all__ = ["MockTransport", "UnreachableTransport", "json_response", "problem_response"]


class MockTransport:
    """A transport that answers with ``handler(request)``; ``requests`` lists what came.

    Args:
        handler: Called with each :class:`~nodecert.client.Request`; returns the
            :class:`~nodecert.client.Response`, or raises (a
            :class:`~nodecert.client.ServiceUnreachableError` to play a network failure).
    """

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    def send(self, request: Request, *, timeout: float) -> Response:
        """Record ``request`` and return the handler's answer."""
        self.requests.append(request)
        return self.handler(request)


class UnreachableTransport:
    """A transport for a service that is down: every request fails to connect."""

    def __init__(self, reason: str = "Connection refused") -> None:
        self.reason = reason

    def send(self, request: Request, *, timeout: float) -> Response:
        """Raise :class:`~nodecert.client.ServiceUnreachableError`."""
        origin = request.url.split("/", 3)[:3]
        raise ServiceUnreachableError(f"cannot reach {'/'.join(origin)}: {self.reason}")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply, as the service sends it."""
    sent = {"content-type": "application/json", **(headers or {})}
    return Response(status, sent, json.dumps(body).encode())


def problem_response(error: NodecertError, status: int | None = None) -> Response:
    """The RFC 9457 problem document the service sends for ``error``.

    Built by the service's own HTTP contract (:func:`nodecert.http.contract.problem`), so
    the fake answers exactly as a server would: the same body, ``Retry-After`` and
    ``WWW-Authenticate``.

    Args:
        error: The error; its ``code``, ``title``, ``detail`` and ``retry_after`` are used.
        status: The HTTP status (default: the service's status for the error's class).
    """
    reply = problem(error)
    body = dict(reply.body)
    if status is not None:
        body["status"] = status
    headers = {name.lower(): value for name, value in reply.headers.items()}
    headers["content-type"] = reply.media_type
    return Response(status or reply.status, headers, json.dumps(body).encode())
