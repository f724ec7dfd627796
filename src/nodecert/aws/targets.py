"""What an authorizer event asks for, parsed into typed values: the method ARN and the node.

API Gateway and IAM match a policy's ``Resource`` with two wildcards, ``*`` (any run of
characters, ``/`` included) and ``?`` (any one character), so an Allow that names anything
wider than this very request's method ARN also names requests to other nodes
(``…/*/nodes/n1`` matches ``…/GET/nodes/n9/x/nodes/n1``). The authorizer therefore allows
exactly the method ARN it was asked about, and only one that :meth:`MethodARN.parse`
accepts: a fixed method and path segments from a strict alphabet that has no wildcard.

Every function here is total: a value of the wrong type or shape is a
:class:`TargetError` saying what is wrong, never another exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["METHODS", "SEGMENT", "MethodARN", "TargetError", "host_node", "path_parameters"]

# The HTTP methods API Gateway puts in a method ARN; never its `*` (ANY).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# RFC 3986 path characters without IAM's wildcards (`*`, `?`), without `%` (an escape a
# backend may decode into `/`), `$` (IAM policy variables are `${…}`) and quotes, brackets
# or `&`. A path with anything else in it is denied, not escaped.
SEGMENT = re.compile(r"[A-Za-z0-9._~:@!+,;=-]{1,255}")
_PREFIX = re.compile(r"arn:aws(?:-[a-z]+)*:execute-api:[a-z0-9-]{1,32}:[0-9]{12}:[A-Za-z0-9]{1,64}")
_STAGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HOST = re.compile(r"([A-Za-z0-9-]{1,63})(?:\.[A-Za-z0-9-]{1,63}){0,126}\.?(?::[0-9]{1,5})?")
_MAX_ARN = 2048
# The path parameter a `host` target checks the Host against, when the route has it.
NODE_PARAMETER = "nodeId"


class TargetError(ValueError):
    """The event does not name one method, path or node unambiguously (a deny)."""


@dataclass(frozen=True, slots=True)
class MethodARN:
    """A method ARN without wildcards: ``<prefix>/<stage>/<METHOD>/<segment>/…``.

    Attributes:
        prefix: ``arn:<partition>:execute-api:<region>:<account>:<api id>``.
        stage: The stage name.
        method: The HTTP method, one of :data:`METHODS`.
        path: The path segments (empty for ``/``).
        trailing_slash: The path ends in ``/`` (and is not ``/`` itself).
    """

    prefix: str
    stage: str
    method: str
    path: tuple[str, ...]
    trailing_slash: bool = False

    @classmethod
    def parse(cls, value: object) -> MethodARN:
        """Parse a method ARN from an event.

        Raises:
            TargetError: not a string, too long, or a part outside its alphabet (a wildcard,
                a percent escape, an empty, ``.`` or ``..`` segment, an unknown method).
        """
        if not isinstance(value, str) or not value:
            raise TargetError("methodArn: missing or not a string")
        if len(value) > _MAX_ARN:
            raise TargetError(f"methodArn: longer than {_MAX_ARN} characters")
        parts = value.split("/")
        if len(parts) < 4:
            raise TargetError("methodArn: expected <api>/<stage>/<method>/<path>")
        prefix, stage, method, *path = parts
        if not _PREFIX.fullmatch(prefix):
            raise TargetError("methodArn: not an execute-api ARN")
        if not _STAGE.fullmatch(stage):
            raise TargetError("methodArn: stage outside [A-Za-z0-9_-]")
        if method not in METHODS:
            raise TargetError("methodArn: not a single HTTP method")
        trailing = len(path) > 1 and path[-1] == ""
        if path == [""] or trailing:
            path = path[:-1]
        for segment in path:
            if not SEGMENT.fullmatch(segment) or segment in (".", ".."):
                raise TargetError("methodArn: a path segment outside the allowed alphabet")
        return cls(prefix, stage, method, tuple(path), trailing)

    def __str__(self) -> str:
        path = "/".join(self.path) + ("/" if self.trailing_slash else "")
        return f"{self.prefix}/{self.stage}/{self.method}/{path}"

    def parameters(self, template: object) -> dict[str, str]:
        """The path parameters of this ARN under a resource template such as
        ``/nodes/{nodeId}/{proxy+}``.

        Raises:
            TargetError: the template is not a string, or the path does not fit it.
        """
        if not isinstance(template, str) or not template.startswith("/"):
            raise TargetError("resource: missing or not a path template")
        names = template.strip("/").split("/") if template.strip("/") else []
        values: dict[str, str] = {}
        for index, name in enumerate(names):
            if name.startswith("{") and name.endswith("+}"):
                if index != len(names) - 1 or index >= len(self.path):
                    raise TargetError("resource: the path does not fit the template")
                values[name[1:-2]] = "/".join(self.path[index:])
                return values
            if index >= len(self.path):
                raise TargetError("resource: the path does not fit the template")
            if name.startswith("{") and name.endswith("}"):
                values[name[1:-1]] = self.path[index]
            elif name != self.path[index]:
                raise TargetError("resource: the path does not fit the template")
        if len(names) != len(self.path):
            raise TargetError("resource: the path does not fit the template")
        return values


def path_parameters(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event's ``pathParameters`` (an object; anything else is none)."""
    value = event.get("pathParameters")
    return value if isinstance(value, Mapping) else {}


def host_node(event: Mapping[str, Any]) -> str:
    """The first label of the one Host the event names.

    The Host comes from ``headers`` and, for REST events, ``multiValueHeaders`` (names
    compared without regard to case), or else from ``requestContext.domainName``.

    Raises:
        TargetError: no Host, or more than one: two values in ``multiValueHeaders``, two
            names in ``headers`` with different values, a comma-joined value (HTTP API
            joins repeated headers so), or a value that is not a host name with an
            optional port.
    """
    values: list[object] = []
    headers = event.get("headers")
    if isinstance(headers, Mapping):
        values += [v for k, v in headers.items() if str(k).lower() == "host"]
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping):
        for name, listed in multi.items():
            if str(name).lower() != "host":
                continue
            if not isinstance(listed, list) or len(listed) != 1:
                raise TargetError("Host: more than one value")
            values += listed
    if not values:
        context = event.get("requestContext")
        domain = context.get("domainName") if isinstance(context, Mapping) else None
        values = [domain] if domain is not None else []
    if not values or any(not isinstance(v, str) for v in values):
        raise TargetError("Host: missing or not a string")
    distinct = {str(v) for v in values}
    if len(distinct) != 1:
        raise TargetError("Host: more than one value")
    (host,) = distinct
    match = _HOST.fullmatch(host)
    if match is None:
        raise TargetError("Host: not one host name")
    return match.group(1)
