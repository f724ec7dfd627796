"""API Gateway Lambda authorizer: the node-side decision for mutual-TLS custom domains.

API Gateway checks the client certificate's chain against the truststore of the custom
domain, but not revocation. This authorizer makes the full decision
(:class:`~nodecert.nodeside.access.AccessDecider`) on the PEM that API Gateway forwards; it parses
the certificate and never trusts ``subjectDN``.

Two event shapes are understood:

- REST API ``REQUEST`` authorizer: the certificate is in
  ``requestContext.identity.clientCert.clientCertPem``; the answer is an IAM policy. Allow
  is scoped to the target node's resources (``<api>/<stage>/*/<path up to the node>`` and
  everything below it), so a cached policy never opens another node.
- HTTP API (payload format 2.0, simple responses): the certificate is in
  ``requestContext.authentication.clientCert.clientCertPem``; the answer is
  ``{"isAuthorized": ...}``.

Both carry the context ``userId``, ``nodeId``, ``serial`` when allowed (and ``reason`` when
denied). The target node comes from ``NODECERT_AUTHORIZER_TARGET``: ``path:nodeId``
(default; a path parameter) or ``host`` (the first label of the Host header).

Once started, the handler never raises: any failure, including an unreachable store, is a
Deny. Starting is different: without a CA to check against (``NODECERT_CA_BUNDLE``, or
``NODECERT_CA=acmpca`` with its ARN) or with another setting it cannot honour, every
invocation fails with a :class:`~nodecert.core.errors.ConfigurationError` whose message says
what to set; it never makes a CA of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nodecert.nodeside.access import Decision, DenyReason
from nodecert.nodeside.verify import Decider

__all__ = ["TargetSource", "handle", "lambda_handler"]

log = logging.getLogger("nodecert")


class TargetSource:
    """Where the target node id is read from: ``path:<parameter>`` or ``host``."""

    def __init__(self, spec: str = "path:nodeId") -> None:
        kind, _, name = spec.partition(":")
        if not ((kind == "host" and not name) or (kind == "path" and name)):
            raise ValueError(f"authorizer target: {spec!r} is not 'host' or 'path:<parameter>'")
        self.kind = kind
        self.parameter = name

    def node_of(self, event: Mapping[str, Any]) -> str | None:
        """The target node of ``event``, or None when it is missing."""
        if self.kind == "path":
            value = _object(event.get("pathParameters")).get(self.parameter)
            return value if isinstance(value, str) and value else None
        headers = {str(k).lower(): v for k, v in _object(event.get("headers")).items()}
        host = headers.get("host")
        if not isinstance(host, str) or not host:
            host = _object(event.get("requestContext")).get("domainName")
        if not isinstance(host, str) or not host:
            return None
        return host.split(":", 1)[0].split(".", 1)[0]


def handle(event: Mapping[str, Any], decider: Decider, target: TargetSource) -> dict[str, Any]:
    """Answer one authorizer ``event``. Never raises.

    Args:
        event: The API Gateway authorizer event (REST ``REQUEST`` or HTTP API 2.0).
        decider: The decision maker.
        target: Where the target node comes from.
    """
    if not isinstance(event, Mapping):
        event = {}
    is_v2 = event.get("version") == "2.0"
    try:
        decision = _decide(event, decider, target, is_v2=is_v2)
    except Exception as exc:
        # Fail closed: a malformed event or a bug must never turn into an Allow.
        log.warning("authorizer: %s while deciding; denying", type(exc).__name__)
        decision = Decision.deny(DenyReason.STORE_UNAVAILABLE, "internal failure")
    log.info(
        "authorizer allowed=%s reason=%s serial=%s",
        decision.allowed,
        decision.reason,
        decision.serial,
    )
    if is_v2:
        return {"isAuthorized": decision.allowed, "context": _context(decision)}
    return _policy(event, decision, target)


def _decide(
    event: Mapping[str, Any], decider: Decider, target: TargetSource, *, is_v2: bool
) -> Decision:
    # A field of the wrong type is as good as absent: no certificate, or no target.
    context = _object(event.get("requestContext"))
    holder = _object(context.get("authentication") if is_v2 else context.get("identity"))
    pem = _object(holder.get("clientCert")).get("clientCertPem")
    if not isinstance(pem, str) or not pem:
        return Decision.deny(DenyReason.NO_CERTIFICATE, "no client certificate in the event")
    node = target.node_of(event)
    if node is None:
        return Decision.deny(DenyReason.INVALID_TARGET, "no target node in the event")
    return decider.decide(pem, node)


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _context(decision: Decision) -> dict[str, str]:
    if decision.allowed and decision.identity is not None:
        return {
            "userId": decision.identity.user_id,
            "nodeId": decision.identity.node_id,
            "serial": decision.serial or "",
        }
    return {"reason": decision.reason.value if decision.reason else "denied"}


def _policy(event: Mapping[str, Any], decision: Decision, target: TargetSource) -> dict[str, Any]:
    method_arn = str(event.get("methodArn", ""))
    if decision.allowed and decision.identity is not None:
        resources = _node_resources(event, method_arn, target, decision.identity.node_id)
        principal, effect = decision.identity.user_id, "Allow"
    else:
        resources, principal, effect = [method_arn or "*"], "anonymous", "Deny"
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resources}
            ],
        },
        "context": _context(decision),
    }


def _node_resources(
    event: Mapping[str, Any], method_arn: str, target: TargetSource, node_id: str
) -> list[str]:
    # methodArn is arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path...>.
    parts = method_arn.split("/")
    template = str(event.get("resource") or "").strip("/").split("/")
    placeholder = "{" + target.parameter + "}"
    if target.kind != "path" or len(parts) < 3 or placeholder not in template:
        # Without a path template there is no safe wider scope than this very request.
        return [method_arn]
    path = parts[3:]
    depth = template.index(placeholder) + 1
    if len(path) < depth or path[depth - 1] != node_id:
        return [method_arn]
    prefix = "/".join([*parts[:2], "*", *path[:depth]])
    return [prefix, prefix + "/*"]


_wired: tuple[Decider, TargetSource] | None = None


def _wiring() -> tuple[Decider, TargetSource]:
    global _wired
    if _wired is None:
        from nodecert.bootstrap import build_decider, settings_from_environment

        settings = settings_from_environment()
        _wired = (build_decider(settings), TargetSource(settings.authorizer_target))
    return _wired


def lambda_handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point: module-level wiring (built once per container), one call.

    Raises:
        ConfigurationError: the function cannot start (no CA configured, an unknown store,
            a malformed setting). The message is logged and the invocation fails, so API
            Gateway answers 500 (never an Allow) and the function's error metric shows it;
            the wiring is tried again on the next invocation.
    """
    from nodecert.core.errors import ConfigurationError

    try:
        decider, target = _wiring()
    except ConfigurationError as exc:
        log.error("authorizer: cannot start: %s", exc)
        raise
    except ValueError as exc:
        log.error("authorizer: cannot start: %s", exc)
        raise ConfigurationError(f"authorizer: cannot start: {exc}") from exc
    return handle(event, decider, target)
