"""Admin over the API: ``nodes …``, ``revoke`` and ``revoke-all`` against a live server.

The CLI runs in-process (``cli.main``) against a real uvicorn on a loopback port serving the
service; ``--local`` runs it on the same home's store. The home's CA key is encrypted and
the passphrase is not in the CLI's environment: only ``nodes certificate`` signs, and only
it may need it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodecert.backends.local.ca import LocalCA
from nodecert.cli import main
from nodecert.core.identity import serial_for_display
from nodecert.core.values import CertificateStatus
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.support.files import CounterFile
from tests.conftest import ADMIN, make_settings
from tests.kit import LiveServer

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    from nodecert.bootstrap import build_service

    built = build_service(make_settings(tmp_path / "home", ca_passphrase=PASSPHRASE))
    yield built
    built.close()


@pytest.fixture
def server(service: Service) -> Iterator[str]:
    with LiveServer(create_app(service)) as live:
        yield live.url


@pytest.fixture(autouse=True)
def cli_env(service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NODECERT_HOME", str(service.settings.home))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    monkeypatch.chdir(tmp_path)


def token(service: Service, user: str, *, admin: bool = False) -> str:
    assert service.dev_issuer is not None
    group = service.settings.admin_group if admin else None
    return service.dev_issuer.mint(user, admin_group=group)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def issue_client(service: Service, user: str, node: str) -> str:
    from nodecert.core.values import Principal
    from nodecert.issuing.values import IssueRequest

    issued = service.authority.issue(
        Principal(user), IssueRequest(node_id=node, request_id=uuid.uuid4().hex, key_type="ec-p256")
    )
    return issued.record.serial


def issue_server(service: Service, node: str, *names: str) -> str:
    issued = service.authority.issue_node_certificate(
        ADMIN, node, dns_names=list(names), request_id=uuid.uuid4().hex, key_type="ec-p256"
    )
    return issued.record.serial


def status(service: Service, serial: str) -> CertificateStatus:
    row = service.authority.ledger.get(serial)
    assert row is not None
    return row.status


def test_nodes_commands_work_against_a_server_with_an_admin_token(service, server, capsys):
    admin = ["--server", server, "--token", token(service, "root", admin=True)]
    code, out, err = run(capsys, "nodes", "add", "n1", "--owner", "alice", *admin)
    assert (code, out) == (0, "n1\talice\n"), err
    assert service.authority.nodes.owner_of("n1") == "alice"
    code, out, _ = run(capsys, "nodes", "list", *admin, "--json")
    assert code == 0
    assert [(n["nodeId"], n["owner"]) for n in json.loads(out)] == [("n1", "alice")]
    code, out, _ = run(capsys, "nodes", "list", "--owner", "bob", *admin)
    assert (code, out) == (0, "")
    code, out, _ = run(capsys, "nodes", "remove", "n1", *admin)
    assert (code, out) == (0, "removed n1: revoked 0 certificate(s)\n")
    assert service.authority.nodes.owner_of("n1") is None
    # Nothing was done on the local store by the CLI itself: no "home" line.
    assert "home" not in err


def test_a_user_token_is_refused_in_one_line(service, server, capsys):
    user = ["--server", server, "--token", token(service, "alice")]
    code, out, err = run(capsys, "nodes", "add", "n1", "--owner", "alice", *user)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "HTTP 403" in err
    assert service.authority.nodes.owner_of("n1") is None


def test_a_transfer_over_the_api_is_explicit_and_names_the_revoked_server_certificate(
    service, server, capsys
):
    admin = ["--server", server, "--token", token(service, "root", admin=True)]
    service.administration.put_node(ADMIN, "n1", "alice")
    client_serial = issue_client(service, "alice", "n1")
    server_serial = issue_server(service, "n1", "n1.nodes.example", "n1.example")

    code, out, err = run(capsys, "nodes", "add", "n1", "--owner", "bob", *admin)
    assert (code, out) == (1, "")
    assert "'alice'" in err and "--transfer" in err
    assert status(service, server_serial) is CertificateStatus.ACTIVE

    code, out, err = run(capsys, "nodes", "add", "n1", "--owner", "bob", "--transfer", *admin)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["n1\tbob", "transferred n1 from alice to bob: revoked 2 certificate(s)"]
    shown = serial_for_display(server_serial)
    assert f"server certificate {shown} (n1.nodes.example, n1.example)" in lines[2]
    assert lines[3] == (
        "  issue a new one: nodecert nodes certificate n1 --dns n1.nodes.example"
        f" --dns n1.example --server {server}"
    )
    assert status(service, client_serial) is CertificateStatus.REVOKED
    assert status(service, server_serial) is CertificateStatus.REVOKED


def test_a_removal_names_the_revoked_server_certificate_in_json(service, server, capsys):
    admin = ["--server", server, "--token", token(service, "root", admin=True)]
    service.administration.put_node(ADMIN, "n2", "alice")
    server_serial = issue_server(service, "n2", "n2.example")
    code, out, err = run(capsys, "nodes", "remove", "n2", *admin, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert (document["nodeId"], document["revoked"], document["owner"]) == ("n2", 1, None)
    [row] = document["revokedNodeCertificates"]
    assert (row["serialNumber"], row["dnsNames"]) == (server_serial, ["n2.example"])


def test_revoke_all_works_over_the_api_and_on_the_local_store(service, server, capsys):
    service.administration.put_node(ADMIN, "n1", "alice")
    first, second = issue_client(service, "alice", "n1"), issue_client(service, "alice", "n1")
    alice = ["--server", server, "--token", token(service, "alice")]
    code, out, err = run(capsys, "revoke-all", "--node", "n1", "--reason", "keyCompromise", *alice)
    assert code == 0, err
    assert out.splitlines()[0] == "revoked 2 certificate(s)"
    assert {status(service, s) for s in (first, second)} == {CertificateStatus.REVOKED}
    third = issue_client(service, "alice", "n1")
    code, out, err = run(capsys, "revoke-all", "--user", "alice", "--local", "--json")
    assert code == 0, err
    assert [row["serialNumber"] for row in json.loads(out)] == [third]
    assert "nodecert: home " in err


def test_commands_that_sign_nothing_never_need_the_ca_passphrase(service, capsys):
    # The key is encrypted and NODECERT_CA_PASSPHRASE is not set for the CLI.
    service.administration.put_node(ADMIN, "n1", "alice")
    serial = issue_client(service, "alice", "n1")
    server_serial = issue_server(service, "n1", "n1.example")
    ca = service.authority.ca
    assert isinstance(ca, LocalCA)
    before = ca.crl_revision()
    counter = CounterFile(service.settings.home / "ca" / "revocations", durable=False)
    counted = counter.value()

    assert run(capsys, "nodes", "list")[:2] == (0, "n1\talice\t" + _created(service, "n1") + "\n")
    assert run(capsys, "nodes", "add", "n2", "--owner", "bob", "--local")[0] == 0
    code, out, err = run(capsys, "revoke", serial, "--local", "--reason", "superseded")
    assert (code, out) == (0, f"revoked {serial_for_display(serial)} (superseded)\n"), err
    code, out, err = run(capsys, "nodes", "add", "n1", "--owner", "carol", "--transfer")
    assert code == 0, err
    assert f"server certificate {serial_for_display(server_serial)} (n1.example)" in out
    assert "nodecert nodes certificate n1 --dns n1.example\n" in out
    # The CA was told of both revocations (its CRL is stale), without its key.
    assert counter.value() == counted + 2
    assert ca.crl_revision() != before

    # Signing needs the key: one line saying so.
    code, _, err = run(capsys, "nodes", "certificate", "n1", "--dns", "n1.example")
    assert code == 1 and err.count("\n") == 1 and "passphrase" in err.lower()


def _created(service: Service, node: str) -> str:
    [row] = [r for r in service.authority.nodes.list_nodes() if r.node_id == node]
    return row.created_at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["nodes", "list", "--local", "--server", "http://127.0.0.1:1"], "not allowed with"),
        (["nodes", "list", "--token", "t"], "--token: only with --server"),
        (["revoke", "0a", "--local", "--token", "t"], "--token: only with a server"),
        (["revoke-all", "--local"], "one of the arguments --node --user is required"),
        (["revoke", "0a", "--reason", "because"], "invalid choice"),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(argv, fragment, capsys):
    try:
        code = main(argv)  # Our own checks return 2 ...
    except SystemExit as done:  # ... argparse's exit with it.
        code = done.code
    assert code == 2
    assert fragment in capsys.readouterr().err


def test_the_reason_help_lists_every_value(capsys):
    with pytest.raises(SystemExit):
        main(["revoke", "--help"])
    out = capsys.readouterr().out
    assert "keyCompromise" in out and "cessationOfOperation" in out
