"""API Gateway Lambda authorizer: the node-side decision for mutual-TLS custom domains.

API Gateway checks the client certificate's chain against the truststore of the custom
domain, but not revocation. This authorizer makes the full decision
(:class:`~nodecert.nodeside.access.AccessDecider`) on the PEM that API Gateway forwards; it parses
the certificate and never trusts ``subjectDN``.

Two event shapes are understood:

- REST API ``REQUEST`` authorizer: the certificate is in
  ``requestContext.identity.clientCert.clientCertPem``; the answer is an IAM policy whose
  Allow names exactly this request's method ARN, never a wildcard: in IAM and API Gateway
  resource matching ``*`` spans ``/``, so ``…/*/nodes/n1`` would also match
  ``…/GET/nodes/n9/x/nodes/n1``. A method ARN with a character outside a strict alphabet
  (a wildcard ``*`` or ``?``, a ``%`` escape, a ``.`` or ``..`` segment) is denied
  (:mod:`nodecert.aws.targets`).
- HTTP API (payload format 2.0, simple responses): the certificate is in
  ``requestContext.authentication.clientCert.clientCertPem``; the answer is
  ``{"isAuthorized": ...}``.

Both carry the context ``userId``, ``nodeId``, ``serial`` when allowed (and ``reason`` when
denied). The target node comes from ``NODECERT_AUTHORIZER_TARGET``: ``path:nodeId``
(default; a path parameter, which must agree with the method ARN's path under the route's
``resource`` template) or ``host`` (the first label of the one Host header, which must
agree with a ``nodeId`` path parameter when the route has one). An ambiguous target is a
deny (``invalid_target``): two Host values, a comma-joined Host, a path that disagrees.

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

from nodecert.aws.targets import (
    NODE_PARAMETER,
    MethodARN,
    TargetError,
    host_node,
    path_parameters,
)
from nodecert.core.metrics import NO_METRICS, Metrics
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
        """The target node of ``event``, or None when it is missing or ambiguous."""
        try:
            return self.resolve(event, is_v2=event.get("version") == "2.0")
        except TargetError:
            return None

    def resolve(self, event: Mapping[str, Any], *, is_v2: bool) -> str:
        """The one target node of ``event``.

        For a REST event the method ARN must also parse (:meth:`MethodARN.parse`) and name
        the same node wherever its ``resource`` template has the node's parameter.

        Raises:
            TargetError: no target node, or more than one (the event disagrees with itself).
        """
        parameters = path_parameters(event)
        if self.kind == "path":
            node = parameters.get(self.parameter)
            if not isinstance(node, str) or not node:
                raise TargetError("no target node in the event")
        else:
            node = host_node(event)
            in_path = parameters.get(NODE_PARAMETER)
            if in_path is not None and in_path != node:
                raise TargetError("Host: names another node than the path")
        if not is_v2:
            arn = MethodARN.parse(event.get("methodArn"))
            name = self.parameter if self.kind == "path" else NODE_PARAMETER
            template = event.get("resource")
            routed = isinstance(template, str) and "{" + name + "}" in template
            if (self.kind == "path" or routed) and arn.parameters(template).get(name) != node:
                raise TargetError("methodArn: names another node than the event")
        return node


def handle(
    event: Mapping[str, Any],
    decider: Decider,
    target: TargetSource,
    metrics: Metrics = NO_METRICS,
) -> dict[str, Any]:
    """Answer one authorizer ``event``. Never raises.

    Args:
        event: The API Gateway authorizer event (REST ``REQUEST`` or HTTP API 2.0).
        decider: The decision maker.
        target: Where the target node comes from.
        metrics: Where the decision is counted (``authorize_decisions``).
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
    verdict = ("allow", "ok") if decision.allowed else ("deny", str(decision.reason))
    metrics.count("authorize_decisions", {"decision": verdict[0], "reason": verdict[1]})
    if is_v2:
        return {"isAuthorized": decision.allowed, "context": _context(decision)}
    return _policy(event, decision)


def _decide(
    event: Mapping[str, Any], decider: Decider, target: TargetSource, *, is_v2: bool
) -> Decision:
    # A field of the wrong type is as good as absent: no certificate, or no target.
    context = _object(event.get("requestContext"))
    holder = _object(context.get("authentication") if is_v2 else context.get("identity"))
    pem = _object(holder.get("clientCert")).get("clientCertPem")
    if not isinstance(pem, str) or not pem:
        return Decision.deny(DenyReason.NO_CERTIFICATE, "no client certificate in the event")
    try:
        node = target.resolve(event, is_v2=is_v2)
    except TargetError as exc:
        return Decision.deny(DenyReason.INVALID_TARGET, str(exc))
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


def _policy(event: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    method_arn = event.get("methodArn")
    allowed: MethodARN | None = None
    if decision.allowed and decision.identity is not None:
        # resolve() parsed it before the decision; parsed again, it is total all the same.
        try:
            allowed = MethodARN.parse(method_arn)
        except TargetError:
            decision = Decision.deny(DenyReason.INVALID_TARGET, "methodArn")
    if allowed is not None and decision.identity is not None:
        # Exactly this request's method and path: no wildcard that could span a `/`.
        resources = [str(allowed)]
        principal, effect = decision.identity.user_id, "Allow"
    else:
        # A Deny may be as wide as it likes: it only ever takes away.
        deny = method_arn if isinstance(method_arn, str) and method_arn else "*"
        resources, principal, effect = [deny], "anonymous", "Deny"
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


_wired: tuple[Decider, TargetSource, Metrics] | None = None


def _wiring() -> tuple[Decider, TargetSource, Metrics]:
    global _wired
    if _wired is None:
        from nodecert.aws.metrics import EmbeddedMetrics
        from nodecert.bootstrap import build_decider, settings_from_environment
        from nodecert.support.logs import configure

        settings = settings_from_environment()
        if settings.log_format == "json":
            configure(settings.log_level, settings.log_format)
        metrics = (
            EmbeddedMetrics(settings.metrics_namespace) if settings.metrics == "on" else NO_METRICS
        )
        _wired = (build_decider(settings), TargetSource(settings.authorizer_target), metrics)
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
        decider, target, metrics = _wiring()
    except ConfigurationError as exc:
        log.error("authorizer: cannot start: %s", exc)
        raise
    except ValueError as exc:
        log.error("authorizer: cannot start: %s", exc)
        raise ConfigurationError(f"authorizer: cannot start: {exc}") from exc
    try:
        return handle(event, decider, target, metrics)
    finally:
        flush = getattr(metrics, "flush", None)
        if callable(flush):
            flush()
