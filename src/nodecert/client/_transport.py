"""How the client talks HTTP: a tiny transport seam and its standard-library implementation.

The standard library is enough for this client: a handful of JSON requests per run, one
connection each, TLS through :mod:`ssl` with the system store or a CA file. A node installs
``pip install nodecert`` (cryptography and PyJWT) and gets the client without an HTTP
library. Tests and users swap the transport for :class:`nodecert.testing.MockTransport`.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nodecert.client._errors import ServiceUnreachableError
from nodecert.client._models import UnexpectedReplyError
from nodecert.core.errors import InvalidRequestError

__all__ = ["Request", "Response", "Transport", "UrllibTransport"]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the client builds it (``url`` is absolute)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response: status, headers (lower-case names) and the raw body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Transport(Protocol):
    """Sends a request and returns the response, whatever its status.

    Implementations raise :class:`~nodecert.client.ServiceUnreachableError` when no
    response arrived (refused, reset, timed out, TLS failure); an HTTP error status is a
    :class:`Response`, not an exception.
    """

    def send(self, request: Request, *, timeout: float) -> Response:
        """Send ``request``, waiting at most ``timeout`` seconds per network operation."""
        ...


class UrllibTransport:
    """A :class:`Transport` on :mod:`urllib.request`.

    Args:
        cafile: A PEM bundle to trust for ``https://`` (default: the system store).
        max_reply_bytes: The largest reply body read (default 64 MiB): a broken or
            hostile server cannot make the client read without end.
    """

    def __init__(
        self, *, cafile: Path | str | None = None, max_reply_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.max_reply_bytes = max_reply_bytes
        self._context: ssl.SSLContext | None = None
        if cafile is not None:
            try:
                self._context = ssl.create_default_context(cafile=str(cafile))
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ServiceUnreachableError(f"CA file {cafile}: {reason}") from None
        # No redirects, no proxies from the environment surprising a node's renewal, no
        # cookies: one plain request, one answer.
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPSHandler(context=self._context),
            _NoRedirect(),
            urllib.request.ProxyHandler({}),
        ]
        self._opener = urllib.request.build_opener(*handlers)

    def send(self, request: Request, *, timeout: float) -> Response:
        """Send ``request`` and return the response (HTTP errors included).

        Raises:
            ServiceUnreachableError: no response: refused, unresolvable, reset, timed out
                or a failed TLS handshake; the message names the URL's host and the reason.
            UnexpectedReplyError: the reply body is larger than ``max_reply_bytes``.
            InvalidRequestError: a header value urllib refuses (a line break, say).
        """
        outgoing = urllib.request.Request(  # noqa: S310 - the client checks the scheme.
            request.url, data=request.body, method=request.method, headers=request.headers
        )
        where = _origin(request.url)
        try:
            with self._opener.open(outgoing, timeout=timeout) as reply:
                body = self._read(reply)
                return Response(reply.status, _headers(reply.headers.items()), body)
        except urllib.error.HTTPError as exc:
            with exc:
                body = self._read(exc)
            return Response(exc.code, _headers(exc.headers.items()), body)
        except ValueError:
            # http.client refuses header values with line breaks; never echo the value.
            raise InvalidRequestError("request: a header value has invalid characters") from None
        except urllib.error.URLError as exc:
            raise ServiceUnreachableError(f"cannot reach {where}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise ServiceUnreachableError(
                f"cannot reach {where}: no answer within {timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceUnreachableError(f"cannot reach {where}: {_reason(exc)}") from None

    def _read(self, reply: Any) -> bytes:
        body: bytes = reply.read(self.max_reply_bytes + 1)
        if len(body) > self.max_reply_bytes:
            raise UnexpectedReplyError(
                f"reply: larger than {self.max_reply_bytes} bytes; not read further"
            )
        return body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        # The API never redirects; following one would resend the bearer token elsewhere.
        return None


def _headers(items: object) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}  # type: ignore[attr-defined]


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS: {reason.verify_message or 'certificate verify failed'}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS: {reason.reason or reason}"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
