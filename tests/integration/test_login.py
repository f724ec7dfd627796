"""``nodecert login``: the device authorization grant (RFC 8628), end to end on loopback.

The service's dev issuer offers the device endpoints; the grant is approved with the real
``nodecert dev-approve`` on the same home, and the token that comes back is checked by the
service's own verifier. Hostile form bodies are a 4xx in OAuth's shape, never a 5xx.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.cli import main
from nodecert.client import (
    DeviceCode,
    LoginError,
    Request,
    Response,
    UrllibTransport,
    device_login,
)
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.support.devicegrants import Approval, DeviceGrants, GrantExpiredError
from nodecert.testing import MockTransport
from tests.conftest import make_settings
from tests.nodeside import LiveServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    from nodecert.bootstrap import build_service

    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    built = build_service(make_settings(tmp_path / "home"))
    monkeypatch.setenv("NODECERT_HOME", str(built.settings.home))
    monkeypatch.chdir(tmp_path)
    yield built
    built.close()


def test_a_login_approved_with_dev_approve_gets_a_token_the_service_accepts(service, capsys):
    seen: list[DeviceCode] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # The first poll found it pending; now the user approves.
            assert main(["dev-approve", seen[0].user_code, "alice", "--admin"]) == 0

    with LiveServer(create_app(service)) as live:
        tokens = device_login(
            UrllibTransport(),
            configuration_url=f"{live.url}/v1/dev/openid-configuration",
            client_id="nodecert-cli",
            announce=seen.append,
            sleep=sleep,
        )
    assert len(sleeps) == 2 and sleeps[0] >= 1
    principal = service.verifier.verify(tokens.token)
    assert (principal.user_id, principal.is_admin) == ("alice", True)
    out = capsys.readouterr().out
    assert out.startswith(f"approved {seen[0].user_code} for alice as an admin")
    assert tokens.token not in out


def test_a_grant_gives_one_token_and_codes_are_checked(service, tmp_path):
    grants = DeviceGrants(service.settings.home / "dev-device")
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        started = http.post("/v1/dev/device", content=b"client_id=nodecert-cli", headers=FORM)
        assert started.status_code == 200 and started.headers["cache-control"] == "no-store"
        document = started.json()
        poll = f"grant_type={GRANT}&client_id=nodecert-cli&device_code={document['device_code']}"
        pending = http.post("/v1/dev/token", content=poll.encode(), headers=FORM)
        assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
        grants.approve(document["user_code"].replace("-", "").lower(), Approval("bob", False))
        assert http.post("/v1/dev/token", content=poll.encode(), headers=FORM).status_code == 200
        again = http.post("/v1/dev/token", content=poll.encode(), headers=FORM)
        assert (again.status_code, again.json()["error"]) == (400, "expired_token")
    # The device code is never on disk: files are named by its hash.
    assert document["device_code"] not in "".join(
        p.read_text() + p.name for p in (service.settings.home / "dev-device").iterdir()
    )


def test_an_expired_grant_cannot_be_approved_or_redeemed(tmp_path):
    now = [1000.0]
    grants = DeviceGrants(tmp_path / "grants", lifetime_s=60, clock=lambda: now[0])
    started = grants.start()
    now[0] += 61
    with pytest.raises(GrantExpiredError):
        grants.redeem(started.device_code)
    other = grants.start()
    now[0] += 61
    from nodecert.core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        grants.approve(other.user_code, Approval("alice", False))


def test_dev_approve_with_a_wrong_code_is_one_line(service, capsys):
    assert main(["dev-approve", "BCDF-GHJK", "alice"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no grant BCDF-GHJK is waiting" in err
    assert main(["dev-approve", "not a code", "alice"]) == 1
    assert main(["dev-approve", "BCDF-GHJK"]) == 2


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(["/v1/dev/device", "/v1/dev/token"]),
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.tuples(
                st.sampled_from(["client_id", "grant_type", "device_code", "scope", "x"]),
                st.text(max_size=60),
            ),
            max_size=6,
        ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8")),
    ),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "application/json",
            "",
        ]
    ),
)
def test_any_form_is_an_answer_or_an_oauth_error(service, path, body, content_type):
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        response = http.post(path, content=body, headers={"Content-Type": content_type})
    assert response.status_code in (200, 400, 401, 413), response.text
    if response.status_code in (400, 401):
        assert isinstance(response.json()["error"], str)


def test_without_the_dev_issuer_there_are_no_device_endpoints(tmp_path, monkeypatch):
    from nodecert.bootstrap import build_service

    other = build_service(
        make_settings(
            tmp_path / "oidc", oidc_issuer="https://idp.example", oidc_audience="nodecert"
        )
    )
    try:
        with TestClient(create_app(other), raise_server_exceptions=False) as http:
            assert http.get("/v1/dev/openid-configuration").status_code == 404
            assert http.post("/v1/dev/device", content=b"client_id=nodecert-cli").status_code == 404
    finally:
        other.close()


def _issuer(replies: list[tuple[int, dict[str, object]]]) -> MockTransport:
    """An OIDC provider with a device grant: its configuration, then ``replies`` in turn."""
    queue = list(replies)

    def answer(request: Request) -> Response:
        if request.url.endswith("/.well-known/openid-configuration"):
            body = {
                "device_authorization_endpoint": "https://idp.example/oauth/device/code",
                "token_endpoint": "https://idp.example/oauth/token",
            }
            return Response(200, {}, json.dumps(body).encode())
        status, body = queue.pop(0)
        return Response(status, {}, json.dumps(body).encode())

    return MockTransport(answer)


DEVICE = (
    200,
    {
        "device_code": "dev-code-1",
        "user_code": "WDJB-MJHT",
        "verification_uri": "https://idp.example/activate",
        "expires_in": 900,
        "interval": 5,
    },
)


def test_a_provider_that_says_slow_down_is_polled_slower_then_refusal_is_one_error():
    sleeps: list[float] = []
    transport = _issuer(
        [
            DEVICE,
            (400, {"error": "authorization_pending"}),
            (400, {"error": "slow_down"}),
            (400, {"error": "access_denied", "error_description": "the user said no"}),
        ]
    )
    with pytest.raises(LoginError, match=r"access_denied \(the user said no\)"):
        device_login(
            transport,
            configuration_url="https://idp.example/.well-known/openid-configuration",
            client_id="cli",
            announce=lambda code: None,
            sleep=sleeps.append,
        )
    assert sleeps == [5.0, 5.0, 10.0]
    [*_, device, _, _, _] = transport.requests
    assert b"client_id=cli" in (device.body or b"")


@pytest.mark.parametrize(
    "reply",
    [
        (200, {"access_token": "not-a-jwt"}),
        (200, {"id_token": ["a.b.c"]}),
        (200, {}),
    ],
)
def test_a_token_reply_without_a_jwt_is_refused(reply):
    with pytest.raises(LoginError, match="holds no JWT"):
        device_login(
            _issuer([DEVICE, reply]),
            configuration_url="https://idp.example/.well-known/openid-configuration",
            client_id="cli",
            announce=lambda code: None,
            sleep=lambda seconds: None,
        )


def test_the_cli_login_is_one_line_when_it_cannot_reach_the_service(capsys):
    from tests.processes import free_port

    code = main(["login", "--server", f"http://127.0.0.1:{free_port()}", "--timeout", "2"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot reach" in err
    assert main(["login", "--issuer", "https://idp.example"]) == 2
