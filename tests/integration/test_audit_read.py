"""The audit trail people can read: ``nodecert audit`` and ``GET /v1/audit``.

Admin actions through the API and the CLI are written to the store; here they are read back
through a live server (uvicorn on loopback), the local store, and the Lambda adapter, with
filters, as JSON lines, and with no secret in them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.aws.handler import LambdaApp
from nodecert.cli import main
from nodecert.core.values import RevocationReason
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from tests.conftest import ADMIN, make_settings
from tests.nodeside import LiveServer, api_event

PASSPHRASE = "audit-ca-passphrase-not-in-the-trail"


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    from nodecert.bootstrap import build_service

    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    built = build_service(make_settings(tmp_path / "home", ca_passphrase=PASSPHRASE))
    monkeypatch.setenv("NODECERT_HOME", str(built.settings.home))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    monkeypatch.chdir(tmp_path)
    yield built
    built.close()


def token(service: Service, user: str, *, admin: bool = False) -> str:
    group = service.settings.admin_group if admin else None
    return service.dev_issuer.mint(user, admin_group=group)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _history(service: Service, capsys: pytest.CaptureFixture[str], server: str) -> str:
    admin_token = token(service, "root", admin=True)
    admin = ["--server", server, "--token", admin_token]
    assert run(capsys, "nodes", "add", "n1", "--owner", "alice", *admin)[0] == 0
    assert run(capsys, "nodes", "add", "n2", "--owner", "bob", "--local")[0] == 0
    assert run(capsys, "nodes", "add", "n1", "--owner", "carol", "--transfer", *admin)[0] == 0
    assert run(capsys, "revoke-all", "--user", "bob", *admin)[0] == 0
    return admin_token


def test_admin_actions_from_the_api_and_the_cli_are_read_back(service, capsys):
    with LiveServer(create_app(service)) as live:
        admin_token = _history(service, capsys, live.url)
        admin = ["--server", live.url, "--token", admin_token]
        code, out, err = run(capsys, "audit", *admin, "--json")
        assert code == 0, err
        entries = [json.loads(line) for line in out.splitlines()]
        assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
            ("root", "certificates.revoke_all", "user:bob"),
            ("root", "node.transfer", "n1"),
            (entries[2]["actor"], "node.add", "n2"),
            ("root", "node.add", "n1"),
        ]
        assert entries[2]["actor"].startswith("cli:")  # The CLI's own actions, named.
        assert "owner=carol previous=alice" in entries[1]["detail"]

        code, out, _ = run(capsys, "audit", *admin, "--action", "node.add")
        assert [line.split("\t")[3] for line in out.splitlines()] == ["n2", "n1"]
        code, out, _ = run(capsys, "audit", *admin, "--node", "n1", "--limit", "1")
        assert [line.split("\t")[2] for line in out.splitlines()] == ["node.transfer"]
        assert run(capsys, "audit", *admin, "--since", "2099-01-01T00:00:00Z")[1] == ""
        assert len(run(capsys, "audit", *admin, "--since", "1h")[1].splitlines()) == 4

        # A user reads the entries about their own nodes only.
        code, out, _ = run(
            capsys, "audit", "--server", live.url, "--token", token(service, "carol")
        )
        assert [line.split("\t")[3] for line in out.splitlines()] == ["n1", "n1"]
        assert run(capsys, "audit", "--server", live.url, "--token", token(service, "eve"))[1] == ""

    # The local store, without the CA passphrase (reading signs nothing).
    code, out, err = run(capsys, "audit", "--local", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 4
    everything = out + json.dumps([e for e in entries])
    assert admin_token not in everything and PASSPHRASE not in everything


def test_the_lambda_answers_get_audit(service):
    service.administration.put_node(ADMIN, "node-1", "alice")
    service.administration.revoke_all(ADMIN, node_id="node-1", reason=RevocationReason.UNSPECIFIED)
    app = LambdaApp.for_service(service)
    event = api_event(
        "rest_put_node_admin.json",
        httpMethod="GET",
        resource="/v1/audit",
        path="/v1/audit",
        body=None,
        queryStringParameters={"action": "node.add"},
        multiValueQueryStringParameters={"action": ["node.add"]},
    )
    answer = app.handle(event)
    assert answer["statusCode"] == 200, answer["body"]
    assert [e["target"] for e in json.loads(answer["body"])["entries"]] == ["node-1"]


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "since=2026-12-07T05:00:00",  # No zone.
        "limit=0",
        "limit=1001",
        "limit=ten",
        "actor=" + "x" * 300,
        "action=node.add&action=node.remove",
    ],
)
def test_a_bad_audit_query_is_a_400_problem(service, query):
    headers = {"Authorization": f"Bearer {token(service, 'root', admin=True)}"}
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        response = http.get(f"/v1/audit?{query}", headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(
        st.sampled_from(["actor", "action", "target", "since", "limit"]),
        st.text(max_size=80),
        max_size=5,
    )
)
def test_any_audit_query_is_an_answer_or_a_400(service, params):
    headers = {"Authorization": f"Bearer {token(service, 'root', admin=True)}"}
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        response = http.get("/v1/audit", params=params, headers=headers)
    assert response.status_code in (200, 400), response.text


def test_cli_since_takes_durations_and_times(service, capsys):
    service.administration.put_node(ADMIN, "n1", "alice")
    assert len(run(capsys, "audit", "--since", "10m")[1].splitlines()) == 1
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert run(capsys, "audit", "--since", later)[1] == ""
    code = None
    try:
        code = main(["audit", "--since", "soon"])
    except SystemExit as done:
        code = done.code
    assert code == 2
