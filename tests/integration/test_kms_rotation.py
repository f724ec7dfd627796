"""``nodecert ca rotate --kms-key-id``: rotating an issuing key held in AWS KMS (moto).

The home's issuing key is a KMS key; a rotation makes an intermediate for another KMS key,
signed by the root (in the home, or offline: CSR out, signed, installed), and the old one
retires as after a file-key rotation. The service signs with the key its settings name, so
it moves to the new key when restarted with the new ``NODECERT_CA_KMS_KEY_ID``; until then
it keeps signing with the old one, which stays trusted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from nodecert.backends.local.home import key_id
from nodecert.bootstrap import build_decider, build_service
from nodecert.cli import main
from nodecert.http.app import create_app
from tests.conftest import Env, make_settings
from tests.integration.test_kms_signer import _key, kms  # noqa: F401 - the fixture
from tests.integration.test_rotation import _issuers, _leaf, _renew
from tests.integration.test_rotation import _key as _private_key


@pytest.fixture
def home(tmp_path: Path, kms: Any, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    home = tmp_path / "home"
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NODECERT_HOME", str(home))
    return home


@contextmanager
def serving(home: Path, key: str) -> Iterator[Env]:
    service = build_service(make_settings(home, ca_kms_key_id=key))
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield Env(service, client)
    finally:
        service.close()


def _public(kms: Any, key: str) -> bytes:  # noqa: F811
    return bytes(kms.get_public_key(KeyId=key)["PublicKey"])


def _der(certificate: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_a_kms_home_rotates_only_onto_another_usable_kms_key(
    kms: Any,  # noqa: F811
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = _key(kms)
    monkeypatch.setenv("NODECERT_CA_KMS_KEY_ID", first)
    assert main(["ca", "init"]) == 0
    with serving(home, first):
        pass  # The ledger, as a home in use has it.
    before = (home / "ca" / "ca.crt").read_bytes()
    capsys.readouterr()
    # A new key file would take the key out of KMS: the next key must be named.
    assert main(["ca", "rotate"]) == 1
    assert "--kms-key-id" in capsys.readouterr().err
    assert main(["ca", "rotate", "--kms-key-id", first]) == 1
    assert "is the issuing key already" in capsys.readouterr().err
    assert main(["ca", "rotate", "--kms-key-id", "alias/no-such-key"]) == 1
    assert "NODECERT_CA_KMS_KEY_ID" in capsys.readouterr().err
    encrypting = _key(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    assert main(["ca", "rotate", "--kms-key-id", encrypting]) == 1
    capsys.readouterr()
    assert main(["ca", "rotate", "--pkcs11-key-label", "next"]) == 2
    assert main(["ca", "rotate", "--kms-key-id", _key(kms), "--new-root"]) == 2
    assert (home / "ca" / "ca.crt").read_bytes() == before
    assert not (home / "ca" / "retired").exists()


def test_a_planned_kms_rotation_keeps_the_old_key_trusted_and_the_restart_moves_to_the_new(
    kms: Any,  # noqa: F811
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = _key(kms), _key(kms, "ECC_NIST_P384")
    monkeypatch.setenv("NODECERT_CA_KMS_KEY_ID", first)
    assert main(["ca", "init"]) == 0
    with serving(home, first) as env:
        env.add_node("n1", "alice")
        old = env.issue("alice", "n1", keyType="ec-p256")
        old_issuer = env.service.authority.ca.chain()[0]
        capsys.readouterr()
        assert main(["ca", "rotate", "--kms-key-id", second]) == 0
        out = capsys.readouterr().out
        assert f"set NODECERT_CA_KMS_KEY_ID={second}" in out
        # Not restarted yet: it still signs with the first key, which stays trusted.
        interim = env.issue("alice", "n1", keyType="ec-p256")
        assert _leaf(interim).issuer == old_issuer.subject
    ca = home / "ca"
    # The settings still name the first key: rotating again now would record it wrong.
    capsys.readouterr()
    assert main(["ca", "rotate", "--kms-key-id", _key(kms)]) == 1
    assert f"the home's issuing key is kms:{second}" in capsys.readouterr().err
    assert not (ca / "ca.key").exists()
    assert (ca / "ca.keyref").read_text() == f"kms:{second}"
    assert (ca / "retired" / key_id(old_issuer) / "ca.keyref").read_text() == f"kms:{first}"
    with serving(home, second) as env:
        new_issuer, root = env.service.authority.ca.chain()[0], env.service.authority.ca.root
        assert _der(new_issuer) == _public(kms, second)
        new_issuer.verify_directly_issued_by(root)
        new = env.issue("alice", "n1", keyType="ec-p256")
        _leaf(new).verify_directly_issued_by(new_issuer)
        assert _issuers(env) == {
            key_id(new_issuer): "active",
            key_id(old_issuer): "retiring",
            key_id(root): "root",
        }
        outside = build_decider(make_settings(home))
        for issued in (old, interim, new):
            assert env.service.decider.decide(_leaf(issued), "n1").allowed
            assert outside.decide(_leaf(issued), "n1").allowed
        # The new issuer's CRL is signed in KMS by the new key.
        crl = x509.load_der_x509_crl(env.client.get("/v1/crl").content)
        assert crl.issuer == new_issuer.subject
        assert crl.is_signature_valid(new_issuer.public_key())  # type: ignore[arg-type]
        # The old certificates renew onto the new key by proof of possession.
        renewed = _renew(env, _leaf(old), _private_key(old))
        assert renewed.status_code == 201, renewed.text
        assert _leaf(renewed.json()).issuer == new_issuer.subject
        # One CRL per issuer: the retiring issuer's is signed in KMS by the first key,
        # reached through the reference its retired entry keeps.
        admin = env.auth("root", admin=True)
        serial = str(interim["serialNumber"])
        revoked = env.client.post(f"/v1/certificates/{serial}/revoke", headers=admin, json={})
        assert revoked.status_code == 200, revoked.text
        reply = env.client.get("/v1/crl", params={"issuer": key_id(old_issuer)})
        assert reply.status_code == 200, reply.text
        old_crl = x509.load_der_x509_crl(reply.content)
        assert old_crl.issuer == old_issuer.subject
        assert old_crl.is_signature_valid(old_issuer.public_key())  # type: ignore[arg-type]
        listed = old_crl.get_revoked_certificate_by_serial_number(_leaf(interim).serial_number)
        assert listed is not None


def test_an_emergency_kms_rotation_with_the_root_offline(
    kms: Any,  # noqa: F811
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second, third = _key(kms), _key(kms), _key(kms)
    offline = tmp_path / "root.key"
    monkeypatch.setenv("NODECERT_CA_KMS_KEY_ID", first)
    assert main(["ca", "init", "--root-key-out", str(offline)]) == 0
    with serving(home, first) as env:
        env.add_node("n1", "alice")
        genuine = env.issue("alice", "n1", keyType="ec-p256")
    # Step 1 on the service's machine: the CSR is signed in KMS by the next key.
    csr_path, signed = tmp_path / "next.csr", tmp_path / "next.crt"
    assert main(["ca", "rotate", "--csr-out", str(csr_path), "--kms-key-id", second]) == 0
    assert f"--kms-key-id {second}" in capsys.readouterr().out
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert _der(csr) == _public(kms, second)  # type: ignore[arg-type]
    assert not (home / "ca" / "pending.key").exists()
    # The offline root signs it.
    root_crt = str(home / "ca" / "root.crt")
    sign = ["ca", "sign-intermediate", str(csr_path), "--root-key", str(offline)]
    assert main([*sign, "--root-cert", root_crt, "--out", str(signed)]) == 0
    # Installed with another key than the pending one: refused, nothing changes.
    before = (home / "ca" / "ca.crt").read_bytes()
    capsys.readouterr()
    install = ["ca", "rotate", "--install", str(signed), "--retire-now"]
    assert main([*install, "--kms-key-id", third]) == 1
    assert f"the pending key is kms:{second}" in capsys.readouterr().err
    assert (home / "ca" / "ca.crt").read_bytes() == before
    assert main([*install, "--kms-key-id", second]) == 0
    assert "restart them now" in capsys.readouterr().out
    with serving(home, second) as env:
        new_issuer = env.service.authority.ca.chain()[0]
        assert new_issuer == x509.load_pem_x509_certificate(signed.read_bytes())
        decision = env.service.decider.decide(_leaf(genuine), "n1")
        assert not decision.allowed and decision.reason.value == "untrusted_issuer"  # type: ignore[union-attr]
        renewed = _renew(env, _leaf(genuine), _private_key(genuine))
        assert renewed.status_code == 201, renewed.text
        assert _leaf(renewed.json()).issuer == new_issuer.subject
    assert not (home / "ca" / "root.key").exists()


def test_a_retired_reference_naming_no_reachable_key_gives_no_crl_and_says_why(
    kms: Any,  # noqa: F811
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = _key(kms), _key(kms)
    monkeypatch.setenv("NODECERT_CA_KMS_KEY_ID", first)
    assert main(["ca", "init"]) == 0
    with serving(home, first) as env:
        old_issuer = env.service.authority.ca.chain()[0]
    assert main(["ca", "rotate", "--kms-key-id", second]) == 0
    reference = home / "ca" / "retired" / key_id(old_issuer) / "ca.keyref"
    assert reference.read_text() == f"kms:{first}"
    garbage = "hsm:" + "x" * 5000
    with serving(home, second) as env:
        for written, shown in [
            ("hsm:label", "'hsm:label'"),
            ("kms:\n", "'kms:'"),  # Read as one stripped line, as ever.
            (" pkcs11 : label", "'pkcs11 : label'"),
            # Well formed, but this service has no PKCS#11 module to reach it with.
            ("pkcs11:nodecert-issuing", "'pkcs11:nodecert-issuing'"),
            (garbage, repr(garbage[:120])),
        ]:
            reference.write_text(written)
            caplog.clear()
            reply = env.client.get("/v1/crl", params={"issuer": key_id(old_issuer)})
            assert reply.status_code == 404, written
            assert (
                f"local CA: no CRL for issuer {key_id(old_issuer)}: {shown} names no key this"
                " service can reach"
            ) in caplog.text
            assert "x" * 121 not in caplog.text
        # The reference put back, its CRL is signed in KMS by the first key again.
        reference.write_text(f"kms:{first}")
        reply = env.client.get("/v1/crl", params={"issuer": key_id(old_issuer)})
        assert reply.status_code == 200, reply.text
        crl = x509.load_der_x509_crl(reply.content)
        assert crl.is_signature_valid(old_issuer.public_key())  # type: ignore[arg-type]
