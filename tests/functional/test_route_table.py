"""The route table (nodecert.http.api.ROUTES) is what each front end, the docs and the
client serve and call: every row, no other route, and who may call it as the row says."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel

from nodecert.aws.handler import ROUTE_KEYS
from nodecert.client import Client, Request, Response
from nodecert.core.errors import BackendUnavailableError, NodecertError
from nodecert.http import schemas
from nodecert.http.api import ROUTES, Access, Route, Runs
from nodecert.testing import MockTransport, problem_response
from tests.kit import new_ca, sign

_OPENAPI_PARAMETER = re.compile(r"\{(\w+)\}")


def _model(name: str) -> type[BaseModel]:
    model = getattr(schemas, name)
    assert inspect.isclass(model) and issubclass(model, BaseModel), name
    return model


def test_each_route_is_declared_once() -> None:
    keys = [route.key for route in ROUTES]
    assert len(keys) == len(set(keys))
    assert len({route.name for route in ROUTES}) == len(ROUTES)


def test_a_direct_route_has_no_path_parameter() -> None:
    # NodecertAPI finds a direct route by its exact path, ahead of any routing.
    direct = [route for route in ROUTES if route.runs is Runs.DIRECT]
    assert direct
    assert all(not route.parameters for route in direct)


def test_the_schemas_are_the_models_the_rows_name() -> None:
    named = {name for route in ROUTES for name in (route.body, route.reply) if name}
    nested = {ref for name in named for ref in _model(name).model_json_schema().get("$defs", {})}
    defined = {
        name
        for name, value in vars(schemas).items()
        if inspect.isclass(value)
        and issubclass(value, BaseModel)
        and value.__module__ == schemas.__name__
    }
    # Problem documents every error reply; nothing else is left over, or missing.
    assert defined == named | nested | {"Problem"}
    assert set(schemas.__all__) == defined


def test_lambda_serves_the_rows_marked_for_it() -> None:
    assert set(ROUTE_KEYS) == {route.key for route in ROUTES if route.on_lambda}
    # What only makes sense beside a self-hosted node is not served on AWS.
    assert "POST /v1/authorize" not in ROUTE_KEYS


def test_openapi_describes_exactly_the_rows(env: Any) -> None:
    spec = env.client.get("/openapi.json").json()
    operations = {
        f"{method.upper()} {path}": operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }
    assert set(operations) == {route.key for route in ROUTES}
    for route in ROUTES:
        operation = operations[route.key]
        assert operation["operationId"].startswith(route.name), route.key
        assert operation["summary"] == route.summary
        responses = operation["responses"]
        assert str(route.status) in responses, route.key
        for status in route.errors:
            content = responses[str(status)]["content"]
            assert "application/problem+json" in content, (route.key, status)
        if route.media_type is not None:
            assert route.media_type in responses[str(route.status)]["content"]
        if route.reply is not None:
            schema = responses[str(route.status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{route.reply}"}
        if route.body is None:
            assert "requestBody" not in operation, route.key
        else:
            body = operation["requestBody"]
            assert body["required"] is route.body_required
            schema = body["content"]["application/json"]["schema"]
            assert schema["title"] == route.body
        parameters = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
        expected = {("path", name) for name in _OPENAPI_PARAMETER.findall(route.path)}
        expected |= {("query", name) for name in route.query}
        assert parameters == expected, route.key


def _rows(wanted: Callable[[Route], bool]) -> list[Any]:
    return [pytest.param(route, id=route.key) for route in ROUTES if wanted(route)]


def _path(route: Route) -> str:
    # Nodes and serials no one has: a row's access is checked before anything is found.
    values = {"nodeId": "n9", "serial": "ab", "userId": "zed"}
    return _OPENAPI_PARAMETER.sub(lambda m: values[m.group(1)], route.path)


_BODIES: dict[str, dict[str, Any]] = {
    "NodeBody": {"owner": "bob"},
    "NodeCertificateRequest": {"dnsNames": ["n9.example"]},
    "GenerateCertRequest": {"nodeId": "n9", "keyType": "ec-p256"},
}


def _send(env: Any, route: Route, headers: dict[str, str]) -> Any:
    body = _BODIES.get(route.body or "")
    return env.client.request(route.method, _path(route), json=body, headers=headers)


@pytest.mark.parametrize("route", _rows(lambda r: r.access.authenticated))
def test_a_route_for_users_refuses_a_caller_without_a_token(env: Any, route: Route) -> None:
    response = _send(env, route, {})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", _rows(lambda r: r.access is Access.ADMIN))
def test_an_admin_route_refuses_a_user_and_not_an_admin(env: Any, route: Route) -> None:
    refused = _send(env, route, env.auth("alice"))
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden"
    admitted = _send(env, route, env.auth("root", admin=True))
    assert admitted.status_code in (200, 201, 404), admitted.text


@pytest.mark.parametrize("route", _rows(lambda r: r.access is Access.USER))
def test_a_user_route_lets_a_user_in(env: Any, route: Route) -> None:
    # Past authentication, and not refused for not being an admin: a user's own query, or
    # (n9, zed and the serial ab being someone else's or nobody's) a 4xx of the use case.
    response = _send(env, route, env.auth("zed"))
    assert response.status_code != 401, response.text
    if response.status_code == 403:
        assert "admin" not in response.json()["detail"].lower(), response.text


@pytest.mark.parametrize("route", _rows(lambda r: r.access is Access.ANYONE))
def test_a_public_route_needs_no_credential(env: Any, route: Route) -> None:
    response = _send(env, route, {})
    assert response.status_code == route.status, response.text


_CLIENT_CALLS = 17


def _client_calls(client: Client) -> None:
    issued = sign(new_ca(), "alice", "n1")
    calls = [
        lambda: client.issue("n1", key_type="ec-p256"),
        lambda: list(client.certificates()),
        lambda: client.audit(),
        lambda: client.certificate("ab"),
        lambda: client.revoke("ab"),
        lambda: client.revoke_all(node_id="n1"),
        lambda: client.revoke_all(user_id="alice"),
        lambda: client.renew(issued.certificate, issued.key),
        lambda: client.ca_chain(),
        lambda: client.ca_roots(),
        lambda: client.ca_issuers(),
        lambda: client.crl(),
        lambda: client.nodes(),
        lambda: client.node("n1"),
        lambda: client.put_node("n1", owner="alice"),
        lambda: client.delete_node("n1"),
        lambda: client.issue_node_certificate("n1", dns_names=["n1.example"]),
    ]
    assert len(calls) == _CLIENT_CALLS
    for call in calls:
        with pytest.raises(NodecertError):
            call()


def test_the_client_calls_the_rows_as_declared() -> None:
    # The client is its own column (it imports nothing of nodecert.http): its paths are
    # held to the table here, each request by the row it reaches.
    def unavailable(request: Request) -> Response:
        return problem_response(BackendUnavailableError("not here"))

    transport = MockTransport(unavailable)
    _client_calls(Client("https://svc", token="t0k3n", transport=transport))
    patterns = [
        (route, re.compile(_OPENAPI_PARAMETER.sub("[^/]+", route.path))) for route in ROUTES
    ]
    reached = set()
    for request in transport.requests:
        path = urlsplit(request.url).path
        (route,) = [r for r, p in patterns if p.fullmatch(path) and r.method == request.method]
        reached.add(route.key)
        sends_token = "Authorization" in request.headers
        assert sends_token is (route.access is not Access.ANYONE), route.key
    # Each call reached a row of its own (a new route needs no client call to be added).
    assert len(reached) == len(transport.requests) == _CLIENT_CALLS
