"""Rotating the issuing intermediate (issue 19): planned and emergency, end to end.

One service keeps running while ``nodecert ca rotate`` (the CLI, in this process, like an
operator's shell beside it) replaces its issuing CA: it issues from the new one at once,
the old one's certificates keep working during the overlap (``GET /v1/ca``, real mutual-TLS
handshakes, the access decision, revocation), and after an emergency rotation the old
one's certificates are refused at once while each genuine one renews onto the new
intermediate by proof of possession; a certificate minted with the leaked key renews not.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.backends.local.hierarchy import load_key
from nodecert.backends.local.home import key_id
from nodecert.backends.local.root_crl import sign_root_crl
from nodecert.bootstrap import build_decider
from nodecert.cli import main
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, build_csr, generate_private_key
from nodecert.core.values import SigningRequest
from nodecert.issuing.renewal import mint_renewal_token, renewal_audience

from ..conftest import Env, make_settings
from ..tls import connect, mtls_server
from .test_mtls import pkilint


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One service's node-side routes for the property test (run many times)."""
    from nodecert.bootstrap import build_service
    from nodecert.http.public_routes import PublicRoutes

    service = build_service(make_settings(tmp_path_factory.mktemp("crl") / "home"))
    yield PublicRoutes.for_service(service)
    service.close()


@pytest.fixture
def home(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's home, as the CLI's NODECERT_HOME."""
    home = env.service.settings.home
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NODECERT_HOME", str(home))
    return home


def _leaf(issued: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(str(issued["certificate"]).encode())


def _handshake(env: Env, issued: dict[str, Any], tmp_path: Path, trust: bytes) -> bytes:
    with mtls_server(trust, tmp_path) as (port, server_ca, seen):
        try:
            return connect(
                port,
                server_ca,
                str(issued["certificate"]) + str(issued["certificateChain"]),
                str(issued["privateKey"]),
                tmp_path,
            )
        finally:
            seen.done.wait(10)


def _renew(env: Env, certificate: x509.Certificate, key: Any) -> Any:
    audience = renewal_audience(env.service.settings.trust_domain)
    token = mint_renewal_token(certificate, key, audience=audience)
    return env.client.post("/v1/renew", headers={"Authorization": f"Bearer {token}"})


def _key(issued: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(str(issued["privateKey"]).encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _issuers(env: Env) -> dict[str, str]:
    reply = env.client.get("/v1/ca/issuers")
    assert reply.status_code == 200
    return {i["keyId"]: i["status"] for i in reply.json()["issuers"]}


def test_rotation_refuses_a_one_tier_home_and_a_missing_root_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodecert.bootstrap import build_service

    from .test_two_tier import _one_tier_home

    _one_tier_home(tmp_path / "old")
    build_service(make_settings(tmp_path / "old")).close()
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "old"))
    before = (tmp_path / "old" / "ca" / "ca.crt").read_bytes()
    assert main(["ca", "rotate"]) == 1
    assert "--new-root" in capsys.readouterr().err
    assert (tmp_path / "old" / "ca" / "ca.crt").read_bytes() == before
    # Two tiers with the root key taken offline: rotate needs it given.
    new = tmp_path / "new"
    monkeypatch.setenv("NODECERT_HOME", str(new))
    assert main(["ca", "init", "--root-key-out", str(tmp_path / "root.key")]) == 0
    build_service(make_settings(new)).close()
    before = (new / "ca" / "ca.crt").read_bytes()
    assert main(["ca", "rotate"]) == 1
    assert "--root-key" in capsys.readouterr().err
    assert (new / "ca" / "ca.crt").read_bytes() == before
    assert not (new / "ca" / "retired").exists() or not any((new / "ca" / "retired").iterdir())
    assert main(["ca", "rotate", "--root-key", str(tmp_path / "root.key")]) == 0
    assert (new / "ca" / "ca.crt").read_bytes() != before


def test_a_planned_rotation_issues_from_the_new_intermediate_and_keeps_the_old_valid(
    env: Env, home: Path, tmp_path: Path
) -> None:
    env.add_node("n1", "alice")
    old = env.issue("alice", "n1", keyType="ec-p256")
    old_issuer = env.service.authority.ca.chain()[0]
    assert main(["ca", "rotate"]) == 0
    # The same running service issues from the new intermediate at once.
    new = env.issue("alice", "n1", keyType="ec-p256")
    chain = x509.load_pem_x509_certificates(env.client.get("/v1/ca").content)
    new_issuer, root = chain[0], chain[-1]
    assert new_issuer != old_issuer and old_issuer in chain and len(chain) == 3
    assert _leaf(new).issuer == new_issuer.subject and _leaf(old).issuer == old_issuer.subject
    assert x509.load_pem_x509_certificates(str(new["certificateChain"]).encode()) == [
        new_issuer,
        root,
    ]
    assert x509.load_pem_x509_certificates(env.client.get("/v1/ca/roots").content) == [root]
    assert _issuers(env) == {
        key_id(new_issuer): "active",
        key_id(old_issuer): "retiring",
        key_id(root): "root",
    }
    for certificate in (new_issuer, old_issuer, root):
        assert (
            pkilint(
                "lint_pkix_cert", certificate.public_bytes(serialization.Encoding.DER), tmp_path
            )
            == ""
        )
    # During the overlap both work: the decision (in the service, and from the home's files
    # alone, as an authorizer has it), and real handshakes against GET /v1/ca and the root.
    outside = build_decider(make_settings(home))
    for issued in (old, new):
        assert env.service.decider.decide(_leaf(issued), "n1").allowed
        assert outside.decide(_leaf(issued), "n1").allowed
        assert _handshake(env, issued, tmp_path, env.client.get("/v1/ca").content) == b"hello"
        assert _handshake(env, issued, tmp_path, root.public_bytes(serialization.Encoding.PEM))
    # Revocation under both issuers.
    admin = env.auth("root", admin=True)
    for issued in (old, new):
        serial = str(issued["serialNumber"])
        reply = env.client.post(f"/v1/certificates/{serial}/revoke", headers=admin, json={})
        assert reply.status_code == 200
        assert env.service.decider.decide(_leaf(issued), "n1").reason.value == "revoked"  # type: ignore[union-attr]
        assert outside.decide(_leaf(issued), "n1").reason.value == "revoked"  # type: ignore[union-attr]
    # One CRL per issuer, each signed by its issuer and listing the revoked certificate.
    for issuer, issued in ((new_issuer, new), (old_issuer, old)):
        reply = env.client.get("/v1/crl", params={"issuer": key_id(issuer)})
        assert reply.status_code == 200, reply.text
        crl = x509.load_der_x509_crl(reply.content)
        assert crl.issuer == issuer.subject
        assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        serial = _leaf(issued).serial_number
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert x509.load_der_x509_crl(env.client.get("/v1/crl").content).issuer == new_issuer.subject


def test_an_unknown_or_malformed_crl_issuer_is_a_4xx(env: Env) -> None:
    for value, status in (("00" * 20, 404), ("zz", 400), ("a" * 5000, 400), ("", 400)):
        reply = env.client.get("/v1/crl", params={"issuer": value})
        assert reply.status_code == status, (value, reply.text)
        assert reply.headers["content-type"].startswith("application/problem+json")
    twice = env.client.get("/v1/crl?issuer=" + "00" * 20 + "&issuer=" + "11" * 20)
    assert twice.status_code == 400


def test_an_emergency_rotation_refuses_the_old_at_once_and_renews_the_genuine(
    env: Env, home: Path, tmp_path: Path
) -> None:
    env.add_node("n1", "alice")
    genuine = env.issue("alice", "n1", keyType="ec-p256")
    leaked_issuer = env.service.authority.ca.chain()[0]
    leaked_key = load_key(home / "ca" / "ca.key", None)
    outside = build_decider(make_settings(home))
    assert main(["ca", "rotate", "--retire-now"]) == 0
    # The attacker's certificate: our profile and identity, signed with the leaked key.
    forged_key = generate_private_key(KeyType.EC_P256)
    forger = type(env.service.authority.ca)(
        key=leaked_key,
        certificate=leaked_issuer,
        organization="nodecert",
        trust_domain="nodecert.local",
        chain=(leaked_issuer, env.service.authority.ca.root),
    )
    now = datetime.now(UTC)
    identity = Identity("alice", "n1")
    forged = forger.issue(
        SigningRequest(
            csr=build_csr(
                forged_key, identity, organization="nodecert", trust_domain="nodecert.local"
            ),
            identity=identity,
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=1),
            request_id="forged",
        )
    ).certificate
    # Refused at once, wherever the decision runs, and at TLS against the new GET /v1/ca.
    for decider in (env.service.decider, outside):
        for certificate in (_leaf(genuine), forged):
            decision = decider.decide(certificate, "n1")
            assert not decision.allowed and decision.reason.value == "untrusted_issuer"  # type: ignore[union-attr]
    assert (
        key_id(leaked_issuer) not in _issuers(env)
        or _issuers(env)[key_id(leaked_issuer)] == "retired"
    )
    published = env.client.get("/v1/ca").content
    assert leaked_issuer not in x509.load_pem_x509_certificates(published)
    # A TLS server trusting the new GET /v1/ca no longer holds the retired intermediate.
    # (One trusting the root alone still accepts a client that sends it: there, only the
    # access decision refuses. docs/security.md says so.)
    alone = {**genuine, "certificateChain": ""}
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _handshake(env, alone, tmp_path, published)
    # The forged certificate cannot renew: no ledger knows it.
    refused = _renew(env, forged, forged_key)
    assert refused.status_code == 403, refused.text
    assert "not in the ledger" in refused.json()["detail"]
    # The genuine one renews onto the new intermediate by proof of possession.
    renewed = _renew(env, _leaf(genuine), _key(genuine))
    assert renewed.status_code == 201, renewed.text
    successor = renewed.json()
    new_issuer = x509.load_pem_x509_certificates(published)[0]
    assert _leaf(successor).issuer == new_issuer.subject
    assert env.service.decider.decide(_leaf(successor), "n1").allowed
    assert outside.decide(_leaf(successor), "n1").allowed
    if not successor.get("privateKey"):
        successor["privateKey"] = genuine["privateKey"]  # The renewal kept the key.
    assert _handshake(env, successor, tmp_path, published) == b"hello"


def test_a_rotation_killed_midway_is_completed_or_never_happened(
    env: Env, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodecert.backends.local import rotation_files

    env.add_node("n1", "alice")
    before = env.service.authority.ca.chain()[0]
    # Killed after the new key was renamed into place, before the certificate was.
    real_replace = rotation_files.os.replace
    calls: list[str] = []

    def dies_on_the_second(source: Any, target: Any) -> None:
        # os.replace is also how every file is written (atomically): count the installs.
        if Path(source).parent.name == "next" and Path(target).parent.name != "next":
            calls.append(str(target))
        if len(calls) == 2:
            raise KeyboardInterrupt  # What a kill leaves: the first rename done only.
        real_replace(source, target)

    monkeypatch.setattr(rotation_files.os, "replace", dies_on_the_second)
    assert main(["ca", "rotate"]) == 130
    monkeypatch.setattr(rotation_files.os, "replace", real_replace)
    assert (home / "ca" / "next").is_dir()  # ca.key is the new one, ca.crt the old one.
    # The running service keeps issuing from the old intermediate (nothing was announced).
    assert _leaf(env.issue("alice", "n1", keyType="ec-p256")).issuer == before.subject
    # The next start finishes the rotation.
    from nodecert.bootstrap import build_service

    restarted = build_service(make_settings(home))
    try:
        after = restarted.authority.ca.chain()[0]
        assert after != before and before in restarted.authority.ca.chain()
        assert not (home / "ca" / "next").exists()
    finally:
        restarted.close()
    # And the running service follows it on its next request.
    assert _leaf(env.issue("alice", "n1", keyType="ec-p256")).issuer == after.subject


def test_a_rotation_killed_while_staging_never_happened(env: Env, home: Path) -> None:
    from nodecert.backends.local import rotation_files
    from nodecert.backends.local.home import locked

    before = env.service.authority.ca.chain()
    # What a kill before the stage was complete leaves: retired/<current>, a partial stage.
    current = home / "ca" / "retired" / key_id(before[0])
    current.mkdir(parents=True)
    (current / "ca.crt").write_bytes((home / "ca" / "ca.crt").read_bytes())
    (current / "retired-now").write_bytes(b"")
    (home / "ca" / "next").mkdir()
    (home / "ca" / "next" / "ca.key").write_bytes(b"half")
    with locked(home / "ca"):
        rotation_files.finish(home / "ca")
    assert not (home / "ca" / "next").exists()
    assert tuple(env.service.authority.ca.chain()) == tuple(before)
    env.add_node("n1", "alice")
    # The current issuer is not refused for a retired-now entry of its own key id.
    issued = env.issue("alice", "n1", keyType="ec-p256")
    assert env.service.decider.decide(_leaf(issued), "n1").allowed
    assert build_decider(make_settings(home)).decide(_leaf(issued), "n1").allowed
    # Its mark is gone with it: the root's CRL never revokes the intermediate in use.
    assert not current.exists()
    current.mkdir()  # Even were it back, the root's CRL would skip the one in use.
    (current / "ca.crt").write_bytes((home / "ca" / "ca.crt").read_bytes())
    (current / "retired-now").write_bytes(b"")
    root_key = load_key(home / "ca" / "root.key", None)
    crl = sign_root_crl(
        home / "ca", root_key=root_key, now=datetime.now(UTC), lifetime=timedelta(days=1)
    )
    assert crl.get_revoked_certificate_by_serial_number(before[0].serial_number) is None


def test_new_root_makes_a_one_tier_home_two_tier_and_keeps_its_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from nodecert.bootstrap import build_service
    from nodecert.http.app import create_app

    from .test_two_tier import _one_tier_home

    old_root = _one_tier_home(tmp_path / "home")
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "home"))
    service = build_service(make_settings(tmp_path / "home"))
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            env = Env(service, client)
            env.add_node("n1", "alice")
            old = env.issue("alice", "n1", keyType="ec-p256")
            assert main(["ca", "rotate", "--new-root"]) == 0
            new = env.issue("alice", "n1", keyType="ec-p256")
            intermediate, *_, root = x509.load_pem_x509_certificates(client.get("/v1/ca").content)
            assert root != old_root and root.issuer == root.subject
            assert _leaf(new).issuer == intermediate.subject
            roots = x509.load_pem_x509_certificates(client.get("/v1/ca/roots").content)
            assert set(roots) == {root, old_root}
            assert _issuers(env) == {
                key_id(intermediate): "active",
                key_id(old_root): "retiring",
                key_id(root): "root",
            }
            for issued in (old, new):
                assert service.decider.decide(_leaf(issued), "n1").allowed
                trust = client.get("/v1/ca").content
                assert _handshake(env, issued, tmp_path, trust) == b"hello"
            assert (tmp_path / "home" / "ca" / "root.key").exists()
    finally:
        service.close()


@settings(max_examples=200, deadline=None)
@given(
    issuer=st.one_of(
        st.text(max_size=300),
        st.from_regex(r"[0-9a-fA-F]{0,140}", fullmatch=True),
        st.sampled_from(["../ca", "..%2f", "00" * 20 + "\n", "0" * 40 + "/x"]),
    )
)
def test_any_crl_issuer_value_is_a_crl_or_a_4xx(routes: Any, issuer: str) -> None:
    from nodecert.core.errors import InvalidRequestError, NotFoundError

    try:
        reply = routes.crl(None, issuer)
    except (InvalidRequestError, NotFoundError):
        return
    assert reply.status == 200


class _ASGITransport:
    """The Python client's transport onto the test client (the ASGI app, no socket)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.paths: list[str] = []

    def send(self, request: Any, *, timeout: float) -> Any:
        from nodecert.client import Response

        path = request.url.removeprefix("https://svc")
        self.paths.append(f"{request.method} {path}")
        reply = self.env.client.request(
            request.method, path, headers=request.headers, content=request.body
        )
        headers = {k.lower(): v for k, v in reply.headers.items()}
        return Response(reply.status_code, headers, reply.content)


def test_renewal_agents_renew_early_when_their_issuer_retires(
    env: Env, home: Path, tmp_path: Path
) -> None:
    from nodecert.client import Client
    from nodecert.client.renewal.agent import RenewalTarget, renew_if_due, watch

    env.add_node("n1", "alice")
    issued = env.issue("alice", "n1", keyType="ec-p256")
    cert, key = tmp_path / "n1.crt", tmp_path / "n1.key"
    cert.write_text(str(issued["certificate"]))
    key.write_text(str(issued["privateKey"]))
    transport = _ASGITransport(env)
    target = RenewalTarget(cert=cert, key=key, client=Client("https://svc", transport=transport))
    # Fresh, and its issuer active: not due (one question asked, nothing renewed).
    now = datetime.now(UTC)
    assert renew_if_due(target, now=now).renewed is None
    assert transport.paths == ["GET /v1/ca/issuers"]
    # A planned rotation: the timer's next run renews onto the new issuing CA.
    assert main(["ca", "rotate"]) == 0
    renewed = renew_if_due(target, now=now).renewed
    assert renewed is not None
    assert renewed.issuer == env.service.authority.ca.chain()[0].subject
    assert renew_if_due(target, now=now).renewed is None  # Its issuer is active: done.
    # An emergency rotation: a watching agent renews at once, without sleeping until due.
    assert main(["ca", "rotate", "--retire-now"]) == 0
    naps: list[float] = []
    watch(target, sleep=naps.append, max_renewals=1)
    assert naps == []
    current = x509.load_pem_x509_certificate(cert.read_bytes())
    assert current.issuer == env.service.authority.ca.chain()[0].subject
    assert env.service.decider.decide(current, "n1").allowed
    # A service that cannot say (an older one: 404) leaves the schedule as it was.
    transport.paths.clear()
    older = Client("https://svc", transport=_refusing_transport(404))
    assert renew_if_due(RenewalTarget(cert=cert, key=key, client=older), now=now).renewed is None


def _refusing_transport(status: int) -> Any:
    from nodecert.core.errors import NotFoundError
    from nodecert.testing import MockTransport, problem_response

    return MockTransport(lambda _request: problem_response(NotFoundError("no route"), status))


def test_a_rotation_signed_by_an_offline_root_csr_out_then_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from nodecert.bootstrap import build_service
    from nodecert.http.app import create_app

    home, offline = tmp_path / "home", tmp_path / "root.key"
    monkeypatch.setenv("NODECERT_HOME", str(home))
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["ca", "init", "--root-key-out", str(offline)]) == 0
    service = build_service(make_settings(home))
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            env = Env(service, client)
            env.add_node("n1", "alice")
            old = env.issue("alice", "n1", keyType="ec-p256")
            before = (home / "ca" / "ca.crt").read_bytes()
            # Failure paths: nothing pending, then options that do not go together.
            assert main(["ca", "rotate", "--install", str(tmp_path / "none.crt")]) == 1
            assert main(["ca", "rotate", "--csr-out", "x.csr", "--new-root"]) == 2
            capsys.readouterr()
            # Step 1 on the service's machine, the signature on the offline one, step 2.
            csr = tmp_path / "next.csr"
            assert main(["ca", "rotate", "--csr-out", str(csr)]) == 0
            signed = tmp_path / "next.crt"
            root_crt = str(home / "ca" / "root.crt")
            sign = ["ca", "sign-intermediate", str(csr), "--root-key", str(offline)]
            assert main([*sign, "--root-cert", root_crt, "--out", str(signed)]) == 0
            # A certificate for another key, or from another root, is refused first.
            other_home = tmp_path / "other"
            monkeypatch.setenv("NODECERT_HOME", str(other_home))
            assert main(["ca", "init", "--root-key-out", str(tmp_path / "other.key")]) == 0
            foreign = tmp_path / "foreign.crt"
            other_root = str(other_home / "ca" / "root.crt")
            other_sign = [
                "ca",
                "sign-intermediate",
                str(csr),
                "--root-key",
                str(tmp_path / "other.key"),
            ]
            assert main([*other_sign, "--root-cert", other_root, "--out", str(foreign)]) == 0
            monkeypatch.setenv("NODECERT_HOME", str(home))
            capsys.readouterr()
            assert main(["ca", "rotate", "--install", str(foreign)]) == 1
            assert "the root did not sign it" in capsys.readouterr().err
            assert main(["ca", "rotate", "--install", str(other_home / "ca" / "ca.crt")]) == 1
            assert "another key" in capsys.readouterr().err
            assert (home / "ca" / "ca.crt").read_bytes() == before
            assert main(["ca", "rotate", "--install", str(signed)]) == 0
            new = env.issue("alice", "n1", keyType="ec-p256")
            installed = x509.load_pem_x509_certificate(signed.read_bytes())
            assert _leaf(new).issuer == installed.subject
            assert env.service.authority.ca.chain()[0] == installed
            for issued in (old, new):
                assert env.service.decider.decide(_leaf(issued), "n1").allowed
            assert not (home / "ca" / "pending.key").exists()
            assert not (home / "ca" / "root.key").exists()  # The root never came back.
    finally:
        service.close()


def test_prune_forgets_issuers_retired_longer_ago_than_any_certificate_lives(
    env: Env, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.add_node("n1", "alice")
    old = env.issue("alice", "n1", keyType="ec-p256")
    old_issuer = env.service.authority.ca.chain()[0]
    assert main(["ca", "rotate"]) == 0
    new = env.issue("alice", "n1", keyType="ec-p256")
    capsys.readouterr()
    # Just retired: its certificates may still live for NODECERT_MAX_VALIDITY_DAYS.
    assert main(["ca", "prune"]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    assert env.service.decider.decide(_leaf(old), "n1").allowed
    # Thirty-one days later (the default maximum lifetime is 30 days).
    entry = home / "ca" / "retired" / key_id(old_issuer)
    then = datetime.now(UTC) - timedelta(days=31)
    (entry / "retired-at").write_text(then.isoformat())
    assert main(["ca", "prune"]) == 0
    assert key_id(old_issuer) in capsys.readouterr().out
    assert not entry.exists()
    assert old_issuer not in env.service.authority.ca.chain()
    assert not env.service.decider.decide(_leaf(old), "n1").allowed
    assert env.service.decider.decide(_leaf(new), "n1").allowed
    assert key_id(old_issuer) not in _issuers(env)


def test_renew_sees_a_revocation_in_its_own_retiring_issuers_crl(
    env: Env, home: Path, tmp_path: Path
) -> None:
    # The daily revocation check of `nodecert renew` asks the CRL of the certificate's own
    # issuer: after a rotation, the active issuer's CRL does not list the old one's.
    from nodecert.client import Client
    from nodecert.client.renewal._revocation import check_revocation
    from nodecert.client.renewal.agent import RenewalTarget

    env.add_node("n1", "alice")
    issued = env.issue("alice", "n1", keyType="ec-p256")
    cert, key = tmp_path / "n1.crt", tmp_path / "n1.key"
    cert.write_text(str(issued["certificate"]))
    key.write_text(str(issued["privateKey"]))
    assert main(["ca", "rotate"]) == 0
    revoked = env.client.post(
        f"/v1/certificates/{issued['serialNumber']}/revoke",
        json={"reason": "keyCompromise"},
        headers=env.auth("alice"),
    )
    assert revoked.status_code == 200
    transport = _ASGITransport(env)
    target = RenewalTarget(cert=cert, key=key, client=Client("https://svc", transport=transport))
    found = check_revocation(target, _leaf(issued), now=datetime.now(UTC))
    assert found is not None
    assert found.reason == "keyCompromise"
    assert any(p.startswith("GET /v1/crl?issuer=") for p in transport.paths)


def test_the_node_side_issuers_follow_the_first_rotation_of_a_home(env: Env, home: Path) -> None:
    # HomeIssuers (the authorizer beside the service) loaded a home that never rotated: no
    # rotation counter yet. The first rotation creates it, and the next look sees it.
    from nodecert.backends.local.home import HomeIssuers

    issuers = HomeIssuers(home / "ca")
    before = issuers.issuer_set()
    assert not (home / "ca" / "rotation").exists()
    assert issuers.issuer_set() is before  # Unchanged: the same set, nothing read again.
    assert main(["ca", "rotate"]) == 0
    after = issuers.issuer_set()
    (old,) = before.intermediates
    assert after.intermediates[0] != old  # The new issuing CA first,
    assert after.intermediates[1:] == (old,)  # the one it replaced still trusted.
