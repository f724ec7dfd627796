"""``POST /generate-cert`` answered ahead of FastAPI's stack: the same replies, byte for byte.

Every request below goes once through the direct endpoint and once through the FastAPI
route it shadows (the same app with its ``direct`` table emptied); status, headers and body
must match, for every kind of failure and for success.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.core.errors import BackendUnavailableError
from nodecert.http.app import create_app
from nodecert.http.direct import NodecertAPI
from nodecert.issuing.service import Service

from ..conftest import ADMIN

# Answered by the server, not the app, or different on every issuance.
_VARYING_HEADERS = {"date", "server", "location", "content-length", "x-request-id"}


@pytest.fixture
def service_settings() -> dict[str, object]:
    # No quotas: both paths issue for the same user, and a rate or cap running out between
    # the two answers would make them differ for a reason that is not theirs.
    return {"max_body_bytes": 4096, "quota_per_minute": 0, "max_active_per_node": 0}


@pytest.fixture(autouse=True)
def nodes(service: Service) -> None:
    service.administration.put_node(ADMIN, "n1", "alice")
    service.administration.put_node(ADMIN, "n2", "bob")


@pytest.fixture
def clients(service: Service) -> Iterator[tuple[TestClient, TestClient]]:
    direct = create_app(service)
    framework = create_app(service)
    assert isinstance(direct, NodecertAPI) and isinstance(framework, NodecertAPI)
    assert ("POST", "/generate-cert") in direct.direct
    framework.direct.clear()
    with (
        TestClient(direct, raise_server_exceptions=False) as a,
        TestClient(framework, raise_server_exceptions=False) as b,
    ):
        yield a, b


def _both(clients: tuple[TestClient, TestClient], **request: Any) -> tuple[Any, Any]:
    direct, framework = clients
    return (
        direct.post("/generate-cert", **request),
        framework.post("/generate-cert", **request),
    )


def _headers(response: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.headers.multi_items() if k not in _VARYING_HEADERS]


def _token(service: Service, user: str = "alice") -> dict[str, str]:
    assert service.dev_issuer is not None
    return {"Authorization": f"Bearer {service.dev_issuer.mint(user)}"}


def _refusals(service: Service) -> list[tuple[str, dict[str, Any]]]:
    auth = _token(service)
    return [
        ("no token", {"json": {"nodeId": "n1"}}),
        ("other scheme", {"json": {"nodeId": "n1"}, "headers": {"Authorization": "Basic eA=="}}),
        ("forged token", {"json": {"nodeId": "n1"}, "headers": {"Authorization": "Bearer x.y.z"}}),
        ("not JSON", {"content": b"{nope", "headers": auth}),
        ("not an object", {"content": b"[1]", "headers": auth}),
        ("unknown field", {"json": {"nodeId": "n1", "admin": True}, "headers": auth}),
        ("no nodeId", {"json": {}, "headers": auth}),
        ("bad nodeId", {"json": {"nodeId": "../etc"}, "headers": auth}),
        ("someone else's node", {"json": {"nodeId": "n2"}, "headers": auth}),
        ("unknown node", {"json": {"nodeId": "n9"}, "headers": auth}),
        ("bad key type", {"json": {"nodeId": "n1", "keyType": "dsa"}, "headers": auth}),
        ("bad CSR", {"json": {"nodeId": "n1", "csr": "-----BEGIN"}, "headers": auth}),
        ("too long", {"content": b'{"nodeId": "' + b"a" * 5000 + b'"}', "headers": auth}),
        (
            "too long, chunked",
            {"content": iter([b'{"nodeId": "', b"a" * 3000, b"a" * 3000, b'"}']), "headers": auth},
        ),
        (
            "bad idempotency key",
            {"json": {"nodeId": "n1"}, "headers": {**auth, "Idempotency-Key": "a b"}},
        ),
    ]


def test_every_refusal_is_the_same_as_through_fastapi(
    service: Service, clients: tuple[TestClient, TestClient]
) -> None:
    for name, request in _refusals(service):
        if isinstance(request.get("content"), Iterator):
            chunks = list(request["content"])
            direct, framework = (
                client.post("/generate-cert", content=iter(chunks), headers=request["headers"])
                for client in clients
            )
        else:
            direct, framework = _both(clients, **request)
        assert direct.status_code >= 400, name
        assert (direct.status_code, _headers(direct), direct.content) == (
            framework.status_code,
            _headers(framework),
            framework.content,
        ), name


def test_an_issued_certificate_is_answered_alike(
    service: Service, clients: tuple[TestClient, TestClient]
) -> None:
    direct, framework = _both(
        clients, json={"nodeId": "n1", "keyType": "ec-p256"}, headers=_token(service)
    )
    assert direct.status_code == framework.status_code == 201
    assert _headers(direct) == _headers(framework)
    assert direct.headers["location"] == f"/v1/certificates/{direct.json()['serialNumber']}"
    issued, other = direct.json(), framework.json()
    assert issued.keys() == other.keys()
    assert {k: issued[k] for k in ("userId", "nodeId", "keyType")} == {
        "userId": "alice",
        "nodeId": "n1",
        "keyType": "ec-p256",
    }
    # Both rows are in the ledger, committed before the replies left.
    assert service.authority.ledger.get(issued["serialNumber"]) is not None
    assert service.authority.ledger.get(other["serialNumber"]) is not None


def test_backend_and_unexpected_failures_are_answered_alike(
    service: Service,
    clients: tuple[TestClient, TestClient],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def ca_down(*args: object, **kwargs: object) -> None:
        raise BackendUnavailableError("ca: down for maintenance", retry_after=7)

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-looking internals")

    for failure, status in ((ca_down, 503), (bug, 500)):
        monkeypatch.setattr(service.authority.ca, "issue", failure)
        direct, framework = _both(clients, json={"nodeId": "n1"}, headers=_token(service))
        assert direct.status_code == status
        assert (direct.status_code, _headers(direct), direct.content) == (
            framework.status_code,
            _headers(framework),
            framework.content,
        )
    assert "secret-looking" not in caplog.text
    assert "unexpected RuntimeError on POST '/generate-cert'" in caplog.text


def test_the_direct_endpoint_skips_the_framework(service: Service) -> None:
    app = create_app(service)

    def no_framework() -> None:
        raise AssertionError("the FastAPI stack was built")

    app.build_middleware_stack = no_framework  # type: ignore[method-assign]
    client = TestClient(app, raise_server_exceptions=False)  # No lifespan: it builds the stack.
    issued = client.post(
        "/generate-cert", json={"nodeId": "n1", "keyType": "ec-p256"}, headers=_token(service)
    )
    assert issued.status_code == 201, issued.text
    # Any other route, or another method on this path, goes to FastAPI.
    assert client.get("/healthz").status_code == 500
    assert client.get("/generate-cert").status_code == 500


def test_a_client_gone_before_its_body_gets_no_answer(service: Service) -> None:
    import asyncio

    app = create_app(service)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/generate-cert",
        "headers": [(b"content-type", b"application/json")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent == []
    assert service.authority.ledger.find(user_id="alice") == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = st.sampled_from(["nodeId", "keyType", "csr", "validityDays", "userId", "extra"])
_BODIES = st.dictionaries(
    _FIELDS,
    st.sampled_from(["n1", "n2", "ec-p256", "rsa-2048", "", "x" * 70, 7, None]) | _JSON,
    max_size=4,
).map(lambda d: json.dumps(d).encode()) | st.binary(max_size=64)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_BODIES, auth=st.sampled_from(["alice", "bob", "none", "garbage"]))
def test_any_body_is_answered_alike(
    service: Service, clients: tuple[TestClient, TestClient], body: bytes, auth: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if auth in ("alice", "bob"):
        headers.update(_token(service, auth))
    elif auth == "garbage":
        headers["Authorization"] = "Bearer not.a.token"
    direct, framework = _both(clients, content=body, headers=headers)
    assert direct.status_code == framework.status_code
    assert _headers(direct) == _headers(framework)
    if direct.status_code == 201:
        assert direct.json().keys() == framework.json().keys()
    else:
        assert direct.content == framework.content


@pytest.mark.parametrize("refusals", [1, 2])
def test_an_issuance_that_meets_a_lock_is_tried_again_on_the_loop(
    service: Service, monkeypatch: pytest.MonkeyPatch, refusals: int
) -> None:
    # An inline issuance whose rate-bucket write met another worker's lock
    # (WouldBlockError, nothing done yet) is tried again on the event loop after a pause,
    # not handed to the thread pool at once: the hop there and back costs more than the
    # issuance, and the pool's writer then held the lock in turn.
    from nodecert.http import direct, routes
    from nodecert.support.blocking import WouldBlockError

    start = routes.Issuance.start
    calls: list[int] = []

    def start_after_refusals(self: routes.Issuance) -> Any:
        calls.append(1)
        if len(calls) <= refusals:
            raise WouldBlockError
        return start(self)

    async def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("handed to the thread pool")

    monkeypatch.setattr(routes.Issuance, "start", start_after_refusals)
    monkeypatch.setattr(direct, "run_in_threadpool", no_pool)
    assert service.inline_issuance
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        answer = client.post(
            "/generate-cert", json={"nodeId": "n1", "keyType": "ec-p256"}, headers=_token(service)
        )
    assert answer.status_code == 201, answer.text
    assert len(calls) == refusals + 1


def test_an_issuance_that_keeps_meeting_a_lock_goes_to_the_thread_pool(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the pauses on the loop, the issuance runs where waiting is fine.
    from nodecert.http import direct, routes
    from nodecert.support.blocking import must_not_wait

    start = routes.Issuance.start
    where: list[bool] = []

    def start_refused_on_the_loop(self: routes.Issuance) -> Any:
        where.append(must_not_wait())
        if must_not_wait():
            from nodecert.support.blocking import WouldBlockError

            raise WouldBlockError
        return start(self)

    monkeypatch.setattr(routes.Issuance, "start", start_refused_on_the_loop)
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        answer = client.post(
            "/generate-cert", json={"nodeId": "n1", "keyType": "ec-p256"}, headers=_token(service)
        )
    assert answer.status_code == 201, answer.text
    assert where == [True] * (1 + len(direct._LOCK_PAUSES_S)) + [False]


def test_an_rsa_issuance_starts_in_the_thread_pool_not_on_the_loop(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its key may be generated as it starts (an empty key pool): tens of ms on the loop
    # would stall every other request of the worker.
    from nodecert.http import routes
    from nodecert.support.blocking import must_not_wait

    start = routes.Issuance.start
    where: list[bool] = []

    def recording(self: routes.Issuance) -> Any:
        where.append(must_not_wait())
        return start(self)

    monkeypatch.setattr(routes.Issuance, "start", recording)
    assert service.inline_issuance
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        answer = client.post(
            "/generate-cert", json={"nodeId": "n1", "keyType": "rsa-2048"}, headers=_token(service)
        )
    assert answer.status_code == 201, answer.text
    assert where == [False]
