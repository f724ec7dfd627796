"""The local CA with its issuing key in a PKCS#11 token: SoftHSM2 from Debian (issue 19).

Failure paths first: a wrong PIN (never echoed), an unknown token or library, a missing key,
and the token failing at issuance (nothing issued, nothing recorded). Then ``nodecert ca
init`` generating the key pair inside the token and certificates and CRLs signed there,
checked by pkilint, ``openssl verify``, a real mutual-TLS handshake and the access decision.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.cli import main
from nodecert.core.errors import BackendUnavailableError, ConfigurationError
from nodecert.http.app import create_app
from tests.signer_checks import issue_and_check_everything

from ..conftest import Env, make_settings

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "hsm-user-pin-7391"

pytestmark = pytest.mark.skipif(
    not MODULE.exists() or shutil.which("softhsm2-util") is None,
    reason="SoftHSM2 is not installed (make deps, or apt-get install softhsm2)",
)


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token for this module (SOFTHSM2_CONF is read once per process)."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            [
                *("softhsm2-util", "--init-token", "--free", "--label", "nodecert"),
                *("--pin", PIN, "--so-pin", "so-pin-5521"),
            ],
            check=True,
            capture_output=True,
        )
        yield "nodecert"


def _settings(home: Path, **overrides: object) -> object:
    values: dict[str, object] = {
        "ca_pkcs11_module": MODULE,
        "ca_pkcs11_token": "nodecert",
        "ca_pkcs11_pin": PIN,
    }
    values.update(overrides)
    return make_settings(home, **values)


def _private_key_labels() -> set[str]:
    """The labels of the private keys in the test token."""
    import pkcs11

    token = pkcs11.lib(str(MODULE)).get_token(token_label="nodecert")
    try:
        session = token.open(user_pin=PIN)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # By a signer of this process.
        session = token.open()  # Logged in too: the login is the application's.
    with session:
        found = session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})
        return {str(key.label) for key in found}


def _pkcs11_env(monkeypatch: pytest.MonkeyPatch, home: Path, label: str) -> None:
    for name, value in {
        "NODECERT_HOME": str(home),
        "NODECERT_CA_PKCS11_MODULE": str(MODULE),
        "NODECERT_CA_PKCS11_TOKEN": "nodecert",
        "NODECERT_CA_PKCS11_KEY_LABEL": label,
        "NODECERT_CA_PKCS11_PIN": PIN,
    }.items():
        monkeypatch.setenv(name, value)


# Failure paths.


def test_a_wrong_pin_an_unknown_token_or_library_and_a_missing_key_stop_the_start(
    token: str, tmp_path: Path
) -> None:
    cases = [
        ({"ca_pkcs11_pin": "0000-wrong"}, "refused the PIN"),
        ({"ca_pkcs11_token": "no-such-token"}, "cannot open token"),
        ({"ca_pkcs11_module": tmp_path / "missing.so"}, "cannot open token"),
        ({"ca_pkcs11_key_label": "never-made"}, "no usable key pair"),
        ({"ca_pkcs11_pin": None}, "set exactly one"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigurationError, match=message) as caught:
            build_service(_settings(tmp_path / "home", **overrides))  # type: ignore[arg-type]
        assert "0000-wrong" not in str(caught.value) and PIN not in str(caught.value)
    assert not (tmp_path / "home" / "ca" / "ca.crt").exists()


@pytest.fixture
def hsm_env(
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Env]:
    label = f"issuing-{request.node.name[-40:]}"
    (tmp_path / "pin").write_text(PIN + "\n")
    (tmp_path / "pin").chmod(0o600)
    _pkcs11_env(monkeypatch, tmp_path / "home", label)
    code = main(["ca", "init"])  # Generates the key pair inside the token.
    assert code == 0, capsys.readouterr().err
    settings = _settings(
        tmp_path / "home",
        ca_pkcs11_key_label=label,
        ca_pkcs11_pin=None,
        ca_pkcs11_pin_file=tmp_path / "pin",
    )
    service = build_service(settings)  # type: ignore[arg-type]
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Env(service, client)
    service.close()


def test_the_token_failing_at_issuance_is_a_503_and_nothing_is_recorded(hsm_env: Env) -> None:
    env = hsm_env
    env.add_node("n1", "alice")
    env.service.authority.ca._state.signer.key.close()  # type: ignore[attr-defined]
    reply = env.client.post("/generate-cert", json={"nodeId": "n1"}, headers=env.auth("alice"))
    assert reply.status_code == 503, reply.text
    assert reply.json()["code"] == "ca_unavailable"
    assert env.service.authority.ledger.find(user_id="alice") == []
    with pytest.raises(BackendUnavailableError):
        env.service.authority.ca._state.signer.key.sign(b"x")  # type: ignore[attr-defined]


# Signed inside the token, on the wire.


def test_certificates_and_crls_signed_in_the_token_pass_every_check(
    hsm_env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = hsm_env
    home = env.service.settings.home
    assert not (home / "ca" / "ca.key").exists()  # The issuing key is in the token only.
    issue_and_check_everything(env, tmp_path)
    # The PIN is nowhere: not in the logs, not in the home.
    assert PIN not in caplog.text
    assert all(PIN.encode() not in p.read_bytes() for p in home.rglob("*") if p.is_file())


# Rotating onto another key in the token (`nodecert ca rotate --pkcs11-key-label`).


def test_rotating_onto_a_new_key_label_in_the_token(
    hsm_env: Env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cryptography import x509

    from nodecert.backends.local.home import key_id
    from tests.integration.test_rotation import _issuers, _key, _leaf, _renew

    caplog.set_level(logging.DEBUG)
    env = hsm_env
    home = env.service.settings.home
    env.add_node("n1", "alice")
    old = env.issue("alice", "n1", keyType="ec-p256")
    old_issuer = env.service.authority.ca.chain()[0]
    current = env.service.settings.ca_pkcs11_key_label
    before = (home / "ca" / "ca.crt").read_bytes()
    capsys.readouterr()
    # Failure paths first: no next key named, the same label, a KMS key for a token home.
    assert main(["ca", "rotate"]) == 1
    assert "--pkcs11-key-label" in capsys.readouterr().err
    assert main(["ca", "rotate", "--pkcs11-key-label", current]) == 1
    assert "is the issuing key already" in capsys.readouterr().err
    assert main(["ca", "rotate", "--kms-key-id", "alias/next"]) == 2
    assert (home / "ca" / "ca.crt").read_bytes() == before
    label = f"{current[:40]}-next"
    # Refused options leave no key in the token: they are checked before one is made.
    assert main(["ca", "rotate", "--pkcs11-key-label", label, "--new-root"]) == 2
    csr_out = ["--csr-out", str(tmp_path / "next.csr"), "--retire-now"]
    assert main(["ca", "rotate", "--pkcs11-key-label", label, *csr_out]) == 2
    capsys.readouterr()
    assert label not in _private_key_labels()
    # The next key pair is generated in the token; the intermediate is signed by the root.
    assert main(["ca", "rotate", "--pkcs11-key-label", label]) == 0
    assert f"set NODECERT_CA_PKCS11_KEY_LABEL={label}" in capsys.readouterr().out
    assert not (home / "ca" / "ca.key").exists()
    assert (home / "ca" / "ca.keyref").read_text() == f"pkcs11:{label}"
    retired = home / "ca" / "retired" / key_id(old_issuer)
    assert (retired / "ca.keyref").read_text() == f"pkcs11:{current}"
    settings = _settings(home, ca_pkcs11_key_label=label)
    service = build_service(settings)  # type: ignore[arg-type]
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            restarted = Env(service, client)
            new_issuer = service.authority.ca.chain()[0]
            assert new_issuer != old_issuer
            new = restarted.issue("alice", "n1", keyType="ec-p256")
            _leaf(new).verify_directly_issued_by(new_issuer)
            assert _issuers(restarted)[key_id(old_issuer)] == "retiring"
            for issued in (old, new):
                assert service.decider.decide(_leaf(issued), "n1").allowed
            crl = x509.load_der_x509_crl(client.get("/v1/crl").content)
            assert crl.is_signature_valid(new_issuer.public_key())  # type: ignore[arg-type]
            renewed = _renew(restarted, _leaf(old), _key(old))
            assert renewed.status_code == 201, renewed.text
            assert _leaf(renewed.json()).issuer == new_issuer.subject
            # The retiring issuer's CRL is signed in the token by the old label's key.
            reply = client.get("/v1/crl", params={"issuer": key_id(old_issuer)})
            assert reply.status_code == 200, reply.text
            old_crl = x509.load_der_x509_crl(reply.content)
            assert old_crl.is_signature_valid(old_issuer.public_key())  # type: ignore[arg-type]
    finally:
        service.close()
    assert PIN not in caplog.text
