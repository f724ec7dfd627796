"""Administration after issuance: explicit transfers, what a PUT revoked, the audit trail.

The CLI in-process (``cli.main``) on a home built by the service, and the HTTP API on the
embedded default.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodecert.bootstrap import build_service
from nodecert.cli.commands import main
from nodecert.core.values import CertificateStatus
from tests.kit import issue

from ..conftest import Env, make_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    build_service(make_settings(path)).close()  # The home `nodecert serve` would make.
    monkeypatch.setenv("NODECERT_HOME", str(path))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_nodes_add_refuses_a_silent_transfer_and_says_what_a_transfer_revoked(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(capsys, "nodes", "add", "n1", "--owner", "alice")[0] == 0
    service = build_service(make_settings(home))
    serials = {
        issue(service.authority, "alice", "n1", admin=service.administration).serial
        for _ in range(2)
    }

    code, out, err = _cli(capsys, "nodes", "add", "n1", "--owner", "bob")
    assert (code, out) == (1, "")
    assert "'alice'" in err and "--transfer" in err and "Traceback" not in err
    assert service.authority.nodes.owner_of("n1") == "alice"
    rows = service.authority.ledger.find(node_id="n1")
    assert {row.status for row in rows} == {CertificateStatus.ACTIVE}

    code, out, err = _cli(capsys, "nodes", "add", "n1", "--owner", "bob", "--transfer")
    assert code == 0, err
    assert "transferred n1 from alice to bob: revoked 2 certificate(s)" in out
    assert {row.serial for row in service.authority.ledger.find(node_id="n1")} == serials
    assert {row.status for row in service.authority.ledger.find(node_id="n1")} == {
        CertificateStatus.REVOKED
    }
    # The same owner again is not a transfer, with or without the flag.
    assert _cli(capsys, "nodes", "add", "n1", "--owner", "bob")[0] == 0
    code, out, _ = _cli(capsys, "nodes", "remove", "n1")
    assert (code, out.strip()) == (0, "removed n1: revoked 0 certificate(s)")

    trail = service.administration.audit.audit_entries(limit=10)
    assert [(e.action, e.target) for e in trail][:3] == [
        ("node.remove", "n1"),
        ("node.add", "n1"),
        ("node.transfer", "n1"),
    ]
    assert all(e.actor.startswith("cli:") for e in trail)
    assert "previous=alice" in trail[2].detail and "revoked=2" in trail[2].detail
    service.close()


def test_put_node_says_how_many_it_revoked_and_the_audit_names_the_admin(env: Env) -> None:
    env.add_node("n1", "alice")
    env.issue("alice", "n1", keyType="ec-p256")
    admin = env.auth("root", admin=True)
    moved = env.client.put("/v1/nodes/n1", json={"owner": "bob"}, headers=admin)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["previousOwner"], moved.json()["revoked"]) == ("alice", 1)
    again = env.client.put("/v1/nodes/n1", json={"owner": "bob"}, headers=admin)
    assert (again.json()["previousOwner"], again.json()["revoked"]) == ("bob", 0)
    mine = env.issue("bob", "n1", keyType="ec-p256")
    serial = mine["serialNumber"]
    revoked = env.client.post(
        f"/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"}, headers=admin
    )
    assert revoked.status_code == 200, revoked.text
    trail = env.service.administration.audit.audit_entries(limit=10)
    assert [(e.actor, e.action, e.target) for e in trail][:3] == [
        ("root", "certificate.revoke", serial),
        ("root", "node.add", "n1"),
        ("root", "node.transfer", "n1"),
    ]
    assert "reason=keyCompromise" in trail[0].detail
