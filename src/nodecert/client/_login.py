"""Getting a token with the OAuth 2.0 device authorization grant (RFC 8628).

For a terminal (an SSH session, a node): the issuer hands out a short user code, the user
approves it elsewhere (a browser, or for the dev issuer ``nodecert dev-approve`` on the
server's machine), and the client polls the token endpoint meanwhile, as slowly as the
issuer asks. Every reply is read defensively: a broken or hostile issuer makes this fail
with one :class:`LoginError` naming what was wrong, never with a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from nodecert.client._transport import Request, Transport
from nodecert.core.errors import NodecertError

__all__ = ["DEVICE_GRANT_TYPE", "DeviceCode", "LoginError", "TokenSet", "device_login"]

DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
_MAX_TOKEN_CHARS = 16 * 1024
_MAX_WAIT_S = 3600


class LoginError(NodecertError):
    """Login failed: refused, expired, or an issuer reply that cannot be used."""

    code = "login_failed"
    title = "Login failed"


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What the user needs to approve the login: the code and where to enter it."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    message: str | None
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenSet:
    """The tokens a login got; ``token`` is the one nodecert takes (ID token, else access)."""

    token: str = field(repr=False)
    token_type: str
    expires_in: int | None


def device_login(
    transport: Transport,
    *,
    configuration_url: str,
    client_id: str,
    scope: str | None = "openid",
    timeout: float = 30.0,
    announce: Callable[[DeviceCode], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TokenSet:
    """Log in with the device grant of the issuer that ``configuration_url`` describes.

    Args:
        transport: How requests are sent.
        configuration_url: The issuer's discovery document (``…/.well-known/
            openid-configuration``); relative endpoints in it are taken from there.
        client_id: The OAuth client (a public client: no secret).
        scope: The scope asked for.
        timeout: Seconds for each request.
        announce: Shows the user the code to approve (called once, before polling).
        sleep: Waits between polls.
        clock: A monotonic clock, for the grant's expiry.

    Raises:
        LoginError: the issuer offers no device grant, refused, or the code expired.
        ServiceUnreachableError: the issuer cannot be reached.
    """
    configuration = _get_json(transport, configuration_url, timeout)
    device_url = _endpoint(configuration, "device_authorization_endpoint", configuration_url)
    token_url = _endpoint(configuration, "token_endpoint", configuration_url)
    form = {"client_id": client_id} | ({"scope": scope} if scope else {})
    started = _post_form(transport, device_url, form, timeout)
    status, reply = started
    if status != 200:
        raise LoginError(f"device authorization: {_oauth_error(reply)}")
    device_code = _text(reply, "device_code", 512)
    code = DeviceCode(
        user_code=_text(reply, "user_code", 64),
        verification_uri=_text(reply, "verification_uri", 2048),
        verification_uri_complete=_optional_text(reply, "verification_uri_complete", 2048),
        message=_optional_text(reply, "message", 512),
        expires_in=_seconds(reply.get("expires_in"), default=600),
    )
    interval = float(_seconds(reply.get("interval"), default=5))
    deadline = clock() + code.expires_in
    announce(code)
    poll = {"grant_type": DEVICE_GRANT_TYPE, "device_code": device_code, "client_id": client_id}
    while True:
        if clock() >= deadline:
            raise LoginError("device authorization: the code expired before it was approved")
        sleep(interval)
        status, reply = _post_form(transport, token_url, poll, timeout)
        if status == 200:
            return _tokens(reply)
        error = reply.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 section 3.5.
            continue
        raise LoginError(f"token: {_oauth_error(reply)}")


def _endpoint(configuration: dict[str, Any], name: str, base: str) -> str:
    value = configuration.get(name)
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise LoginError(f"issuer: its configuration names no {name} (no device grant?)")
    url = urljoin(base, value)
    if urlsplit(url).scheme not in ("http", "https"):
        raise LoginError(f"issuer: {name} is not an http(s) URL")
    return url


def _get_json(transport: Transport, url: str, timeout: float) -> dict[str, Any]:
    response = transport.send(Request("GET", url, {"Accept": "application/json"}), timeout=timeout)
    if response.status != 200:
        raise LoginError(f"issuer: {url[:200]} answered {response.status}")
    return _object(response.body, "issuer configuration")


def _post_form(
    transport: Transport, url: str, form: dict[str, str], timeout: float
) -> tuple[int, dict[str, Any]]:
    body = urlencode(form).encode("ascii")
    response = transport.send(Request("POST", url, dict(_FORM), body), timeout=timeout)
    return response.status, _object(response.body, "issuer reply")


def _object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise LoginError(f"{what}: not JSON") from None
    if not isinstance(data, dict):
        raise LoginError(f"{what}: not a JSON object")
    return data


def _text(reply: dict[str, Any], name: str, limit: int) -> str:
    value = _optional_text(reply, name, limit)
    if value is None:
        raise LoginError(f"issuer reply: {name!r} missing or not a string")
    return value


def _optional_text(reply: dict[str, Any], name: str, limit: int) -> str | None:
    value = reply.get(name)
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        return None
    return value


def _seconds(value: object, *, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_WAIT_S:
        return default
    return value


def _oauth_error(reply: dict[str, Any]) -> str:
    error = _optional_text(reply, "error", 64) or "refused"
    description = _optional_text(reply, "error_description", 200)
    return f"{error} ({description})" if description else error


def _tokens(reply: dict[str, Any]) -> TokenSet:
    token = _optional_text(reply, "id_token", _MAX_TOKEN_CHARS) or _optional_text(
        reply, "access_token", _MAX_TOKEN_CHARS
    )
    if token is None or token.count(".") != 2:
        raise LoginError("token: the reply holds no JWT (id_token or access_token)")
    expires = reply.get("expires_in")
    return TokenSet(
        token=token,
        token_type=_optional_text(reply, "token_type", 32) or "Bearer",
        expires_in=expires if isinstance(expires, int) and not isinstance(expires, bool) else None,
    )
