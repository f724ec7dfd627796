"""An API Gateway (REST) emulation driven by the SAM-translated template.

It routes on the OpenAPI bodies of the template's ``AWS::ApiGateway::RestApi`` resources,
runs the authorizers their ``security`` entries name (a Cognito user pool authorizer checks
the ID token against moto's JWKS; a Lambda ``REQUEST`` authorizer runs the handler the
template names, in a container with the environment the template sets, on the identity
sources and with the result TTL the template sets), and calls the integration:
``aws_proxy`` (a Lambda function, REST payload 1.0) or ``http_proxy`` (an HTTP backend,
with the template's ``requestParameters`` and the stage's variables; to an HTTPS backend it
presents the stage's client certificate, if the stage has one, and trusts the backend's
certificate only if it chains to :attr:`Gateway.backend_trust`, standing in for the public
CAs API Gateway trusts). Events follow AWS's documentation of the REST proxy integration
and of REQUEST authorizers.

Functions run in :mod:`tests.rehearsal.lambdas`; the custom domain is
:mod:`tests.rehearsal.domain`.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from tests.rehearsal.lambdas import Container
from tests.rehearsal.stack import ACCOUNT, REGION, Stack, TemplateError

DEFAULT_TTL = 300
EXPLICIT_DENY = json.dumps(
    {"Message": "User is not authorized to access this resource with an explicit deny"}
).encode()


@dataclass
class Reply:
    """What API Gateway answers."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def message(status: int, message: str | None) -> Reply:
    """An API Gateway error reply (``{"message": ...}``)."""
    return Reply(
        status, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode()
    )


@dataclass
class Route:
    path: str
    method: str
    pattern: re.Pattern[str]
    operation: dict[str, Any]

    @property
    def specificity(self) -> tuple[int, int]:
        return (self.path.count("+}"), self.path.count("{"))


def _pattern(path: str) -> re.Pattern[str]:
    regex = re.escape(path)
    regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", regex)
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
    return re.compile(regex + "$")


def _lambda_of(uri: Any, resources: dict[str, Any]) -> str:
    """The logical id of the Lambda function an integration or authorizer URI invokes.

    A function with ``AutoPublishAlias`` (SnapStart) is invoked through its alias: SAM
    writes ``${<Function>Alias<name>}``, an ``AWS::Lambda::Alias`` whose ``FunctionName``
    names the function.
    """
    if isinstance(uri, dict) and "Fn::Sub" in uri:
        argument = uri["Fn::Sub"]
        if isinstance(argument, list):
            (value,) = argument[1].values()
            return str(value["Fn::GetAtt"][0])
        match = re.search(r"\$\{(\w+)\.Arn\}", argument)
        if match:
            return match[1]
        match = re.search(r"\$\{(\w+)\}", argument)
        alias = resources.get(match[1], {}) if match else {}
        if alias.get("Type") == "AWS::Lambda::Alias":
            return str(alias["Properties"]["FunctionName"]["Ref"])
    raise TemplateError(f"cannot tell which function {uri!r} invokes")


class Gateway:
    """The REST APIs of one deployed :class:`Stack`."""

    def __init__(self, stack: Stack, endpoint: str, backend_trust: str | None = None) -> None:
        self.stack, self.endpoint = stack, endpoint
        self.backend_trust = backend_trust
        self.containers: dict[str, Container] = {}
        # The code package of functions started from now on (None: the session's build).
        self.package: Path | None = None
        self.cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = {}
        self.apis: dict[str, list[Route]] = {}
        self.reload()

    def reload(self) -> None:
        """Route on the REST APIs the stack has now (after a second deploy)."""
        for name, resource in self.stack.of_type("AWS::ApiGateway::RestApi").items():
            body = resource["Properties"]["Body"]
            routes = [
                Route(path, method, _pattern(path), operation)
                for path, operations in body["paths"].items()
                for method, operation in operations.items()
            ]
            self.apis[name] = sorted(routes, key=lambda r: r.specificity)

    def close(self) -> None:
        for container in self.containers.values():
            container.close()

    def logs(self) -> str:
        """Everything the functions logged (for failure messages)."""
        return "\n".join(
            f"--- {name}\n{c.log.read_text()[-3000:]}" for name, c in self.containers.items()
        )

    def run_schedules(self) -> dict[str, tuple[Any, str | None]]:
        """Fire every EventBridge Scheduler schedule once: target function → (result, error).

        The event is the schedule's ``Input``, or ``{}`` (Scheduler's default).
        """
        fired = {}
        for schedule in self.stack.of_type("AWS::Scheduler::Schedule").values():
            target = schedule["Properties"]["Target"]
            function = target["Arn"]["Fn::GetAtt"][0]
            event = json.loads(self.stack.resolve(target.get("Input", "{}")))
            fired[function] = self._container(function).invoke(event)
        return fired

    def _container(self, function: str) -> Container:
        if function not in self.containers:
            spec = self.stack.functions.get(function)
            if spec is None:
                raise TemplateError(f"{function}: no such function")
            self.containers[function] = Container(
                spec.handler,
                spec.environment,
                spec.timeout,
                self.endpoint,
                package=self.package,
                reaches_pca=any(a.startswith("acm-pca:") for a in spec.actions),
            )
        return self.containers[function]

    def _stage(self, api: str) -> dict[str, Any]:
        stage = self.stack.resources[self.stack.stage_resource(api)]["Properties"]
        wanted = ("Variables", "ClientCertificateId")  # not DeploymentId: not emulated
        return dict(self.stack.resolve({k: v for k, v in stage.items() if k in wanted}))

    def _backend_context(self, api: str) -> ssl.SSLContext:
        """TLS to an HTTPS backend: the stage's client certificate, the "public" CAs."""
        context = ssl.create_default_context(cadata=self.backend_trust)
        identifier = self._stage(api).get("ClientCertificateId")
        if identifier is not None:
            certificate = self.stack.client_certificates[identifier]
            with tempfile.TemporaryDirectory(prefix="apigw-client-") as directory:
                cert, key = Path(directory) / "client.crt", Path(directory) / "client.key"
                cert.write_text(certificate.certificate_pem)
                key.write_text(certificate.private_key_pem)
                context.load_cert_chain(cert, key)
        return context

    def _schemes(self, api: str) -> dict[str, Any]:
        body = self.stack.resources[api]["Properties"]["Body"]
        schemes = body.get("securityDefinitions") or body.get("components", {}).get(
            "securitySchemes", {}
        )
        return dict(schemes)

    # The request path.

    def request(
        self,
        api: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        client_cert: dict[str, Any] | None = None,
        domain: str | None = None,
        source_ip: str = "127.0.0.1",
    ) -> Reply:
        headers = dict(headers or {})
        route, parameters = self._match(api, method, path)
        if route is None:
            return message(403, "Missing Authentication Token")
        api_id, stage = self.stack.physical[api], self.stack.stage_of(api)
        context: dict[str, Any] = {
            "resourceId": uuid.uuid4().hex[:6],
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": path if domain else f"/{stage}{path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": (domain or api_id).split(".")[0],
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
            "domainName": domain or f"{api_id}.execute-api.{REGION}.amazonaws.com",
            "apiId": api_id,
        }
        if client_cert is not None:
            context["identity"]["clientCert"] = client_cert
        headers.setdefault("Host", context["domainName"])
        event: dict[str, Any] = {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()}
            if query
            else None,
            "pathParameters": parameters or None,
            "stageVariables": self._stage(api).get("Variables") or None,
            "requestContext": context,
            "body": body.decode() if body else None,
            "isBase64Encoded": False,
        }
        method_arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/{method}{path}"
        denied = self._authorize(api, route, event, method_arn)
        if denied is not None:
            return denied
        integration = route.operation["x-amazon-apigateway-integration"]
        if integration["type"] == "aws_proxy":
            return self._lambda_proxy(_lambda_of(integration["uri"], self.stack.resources), event)
        if integration["type"] == "http_proxy":
            return self._http_proxy(api, integration, event, body)
        raise TemplateError(f"integration type {integration['type']} is not emulated")

    def _match(self, api: str, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.apis[api]:
            wanted = route.method.upper()
            if wanted not in (method, "X-AMAZON-APIGATEWAY-ANY-METHOD"):
                continue
            match = route.pattern.match(path)
            if match:
                return route, {k.rstrip("+"): v for k, v in match.groupdict().items()}
        return None, {}

    # Authorizers.

    def _authorize(
        self, api: str, route: Route, event: dict[str, Any], method_arn: str
    ) -> Reply | None:
        names = [name for entry in route.operation.get("security", []) for name in entry]
        if not names or names == ["NONE"]:
            return None
        (name,) = names
        scheme = self._schemes(api)[name]
        authorizer = scheme["x-amazon-apigateway-authorizer"]
        kind = authorizer["type"]
        if kind == "cognito_user_pools":
            return self._cognito(authorizer, scheme, event)
        if kind == "request":
            return self._request_authorizer(api, name, authorizer, event, method_arn)
        raise TemplateError(f"authorizer type {kind} is not emulated")

    def _cognito(
        self, authorizer: dict[str, Any], scheme: dict[str, Any], event: dict[str, Any]
    ) -> Reply | None:
        header = scheme.get("name", "Authorization").lower()
        token = {k.lower(): v for k, v in event["headers"].items()}.get(header, "")
        if token.lower().startswith("bearer "):
            token = token[7:]
        if not token:
            return message(401, "Unauthorized")
        (pool_arn,) = (self.stack.resolve(a) for a in authorizer["providerARNs"])
        pool_id = pool_arn.rsplit("/", 1)[-1]
        jwks = json.loads(
            urllib.request.urlopen(f"{self.endpoint}/{pool_id}/.well-known/jwks.json").read()
        )
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            (key,) = [k for k in jwks["keys"] if k.get("kid") == kid]
            claims = jwt.decode(
                token,
                jwt.PyJWK(key).key,
                algorithms=["RS256"],
                issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
                options={"verify_aud": False},
            )
        except (jwt.PyJWTError, ValueError):
            return message(401, "Unauthorized")
        if claims.get("token_use") not in ("id", "access"):
            return message(401, "Unauthorized")
        # REST APIs hand claims over as strings; lists are comma-joined.
        event["requestContext"]["authorizer"] = {
            "claims": {
                k: ",".join(map(str, v)) if isinstance(v, list) else str(v)
                for k, v in claims.items()
            }
        }
        return None

    def _identity_values(self, sources: list[str], event: dict[str, Any]) -> list[str | None]:
        headers = {k.lower(): v for k, v in event["headers"].items()}
        values: list[str | None] = []
        for source in sources:
            if source.startswith("method.request.header."):
                values.append(headers.get(source.split(".", 3)[3].lower()))
            elif source.startswith("method.request.querystring."):
                values.append((event["queryStringParameters"] or {}).get(source.split(".", 3)[3]))
            elif source.startswith("method.request.path."):
                values.append((event["pathParameters"] or {}).get(source.split(".", 3)[3]))
            elif source.startswith("context."):
                value: Any = event["requestContext"]
                for part in source.split(".")[1:]:
                    value = value.get(part) if isinstance(value, dict) else None
                values.append(None if value is None else str(value))
            else:
                raise TemplateError(f"identity source {source} is not emulated")
        return values

    def _request_authorizer(
        self,
        api: str,
        name: str,
        authorizer: dict[str, Any],
        event: dict[str, Any],
        method_arn: str,
    ) -> Reply | None:
        ttl = int(authorizer.get("authorizerResultTtlInSeconds", DEFAULT_TTL))
        sources = [s.strip() for s in authorizer.get("identitySource", "").split(",") if s.strip()]
        values = self._identity_values(sources, event)
        if sources and any(v is None for v in values):
            return message(401, "Unauthorized")  # a missing identity source: no call
        key = (f"{api}.{name}", tuple(v or "" for v in values))
        cached = self.cache.get(key) if ttl > 0 else None
        if cached is not None and cached[0] > time.monotonic():
            answer = cached[1]
        else:
            authorizer_event = {
                "type": "REQUEST",
                "methodArn": method_arn,
                **{k: event[k] for k in ("resource", "path", "httpMethod", "headers")},
                "multiValueHeaders": event["multiValueHeaders"],
                "queryStringParameters": event["queryStringParameters"] or {},
                "multiValueQueryStringParameters": event["multiValueQueryStringParameters"] or {},
                "pathParameters": event["pathParameters"] or {},
                "stageVariables": event["stageVariables"] or {},
                "requestContext": event["requestContext"],
            }
            function = _lambda_of(authorizer["authorizerUri"], self.stack.resources)
            answer, error = self._container(function).invoke(authorizer_event)
            if error is not None:
                if "Unauthorized" in error:
                    return message(401, "Unauthorized")
                return message(500, None)  # AuthorizerConfigurationException
            if not isinstance(answer, dict) or "policyDocument" not in answer:
                return message(500, None)
            if ttl > 0:
                self.cache[key] = (time.monotonic() + ttl, answer)
        if not _allows(answer["policyDocument"], method_arn):
            return Reply(403, {"Content-Type": "application/json"}, EXPLICIT_DENY)
        event["requestContext"]["authorizer"] = {
            "principalId": answer.get("principalId"),
            "integrationLatency": 0,
            **{k: str(v) for k, v in (answer.get("context") or {}).items()},
        }
        return None

    # Integrations.

    def _lambda_proxy(self, function: str, event: dict[str, Any]) -> Reply:
        result, error = self._container(function).invoke(event)
        if error is not None or not isinstance(result, dict) or "statusCode" not in result:
            return message(502, "Internal server error")
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        return Reply(int(result["statusCode"]), dict(result.get("headers") or {}), raw)

    def _http_proxy(
        self, api: str, integration: dict[str, Any], event: dict[str, Any], body: bytes
    ) -> Reply:
        connection = self.stack.resolve(integration.get("connectionType", "INTERNET"))
        if connection != "INTERNET":
            raise TemplateError(f"connectionType {connection} is not emulated")
        variables = event["stageVariables"] or {}
        uri = re.sub(
            r"\$\{stageVariables\.(\w+)\}",
            lambda m: str(variables[m[1]]),
            str(self.stack.resolve(integration["uri"])),
        )
        headers = {
            k: v for k, v in event["headers"].items() if k.lower() not in ("host", "content-length")
        }
        for target, source in integration.get("requestParameters", {}).items():
            value = _parameter(source, event)
            if target.startswith("integration.request.path."):
                uri = uri.replace("{" + target.rsplit(".", 1)[1] + "}", value or "")
            elif target.startswith("integration.request.header."):
                headers[target.rsplit(".", 1)[1]] = value or ""
        if event["queryStringParameters"]:
            uri += "?" + urllib.parse.urlencode(event["queryStringParameters"])
        request = urllib.request.Request(
            uri, data=body or None, headers=headers, method=event["httpMethod"]
        )
        context = self._backend_context(api) if uri.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=29, context=context) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())


def _parameter(source: str, event: dict[str, Any]) -> str | None:
    if source.startswith("method.request.path."):
        return (event["pathParameters"] or {}).get(source.rsplit(".", 1)[1])
    if source.startswith("context."):
        value: Any = event["requestContext"]
        for part in source.split(".")[1:]:
            value = value.get(part) if isinstance(value, dict) else None
        return None if value is None else str(value)
    raise TemplateError(f"request parameter {source} is not emulated")


def _allows(policy: dict[str, Any], method_arn: str) -> bool:
    """IAM evaluation of an authorizer's policy for one method ARN: Deny wins."""
    allowed = False
    for statement in policy.get("Statement", []):
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed
