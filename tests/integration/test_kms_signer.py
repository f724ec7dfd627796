"""The local CA with its issuing key in AWS KMS (issue 19): moto's KMS in server mode.

Failure paths first: a key that does not exist or cannot sign, a home made for another key,
KMS failing at issuance (botocore Stubber: nothing issued, nothing recorded) and the DIGEST
form moto does not model. Then certificates and CRLs signed by KMS, checked by ``openssl
verify``, pkilint, a real mutual-TLS handshake and the access decision.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from nodecert.backends.local.ca import LocalCA
from nodecert.backends.signers.kms import KMSSigner
from nodecert.bootstrap import build_service
from nodecert.core.errors import BackendUnavailableError, ConfigurationError
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.http.app import create_app
from nodecert.store.sqlite.store import SQLiteStore
from tests.kit import authority
from tests.signer_checks import issue_and_check_everything

from ..conftest import Env, make_settings
from .conftest import REGION


@pytest.fixture
def kms(aws_env: None, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A KMS client on moto; the service's own clients find moto through the environment."""
    from nodecert.support.awsclients import make_client

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return make_client("kms", region=REGION, max_attempts=1, endpoint_url=moto_endpoint)


def _key(kms: Any, spec: str = "ECC_NIST_P256", usage: str = "SIGN_VERIFY") -> str:
    key_id: str = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
    return key_id


def _stubbed(public_key_der: bytes) -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.session.Session().client(
        "kms", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.add_response(
        "get_public_key",
        {"KeyUsage": "SIGN_VERIFY", "KeySpec": "ECC_NIST_P256", "PublicKey": public_key_der},
        {"KeyId": "k"},
    )
    return client, stubber


# Failure paths.


def test_an_unknown_key_or_one_that_cannot_sign_stops_the_start(kms: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="NODECERT_CA_KMS_KEY_ID"):
        build_service(make_settings(tmp_path / "a", ca_kms_key_id=str(uuid.uuid4())))
    encrypting = _key(kms, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
    with pytest.raises(ConfigurationError, match="not an asymmetric SIGN_VERIFY key"):
        build_service(make_settings(tmp_path / "b", ca_kms_key_id=encrypting))
    assert not (tmp_path / "a" / "ca" / "ca.crt").exists()


def test_a_home_made_for_another_key_is_refused(kms: Any, tmp_path: Path) -> None:
    build_service(make_settings(tmp_path / "home", ca_kms_key_id=_key(kms))).close()
    with pytest.raises(ConfigurationError, match="does not match"):
        build_service(make_settings(tmp_path / "home", ca_kms_key_id=_key(kms)))


@pytest.mark.parametrize("code", ["ThrottlingException", "KMSInvalidStateException"])
def test_kms_failing_at_issuance_is_a_503_and_nothing_is_recorded(
    tmp_path: Path, code: str
) -> None:
    key = generate_private_key(KeyType.EC_P256)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    client, stubber = _stubbed(der)
    stubber.add_client_error("sign", service_error_code=code, service_message="no")
    stubber.activate()
    ca = LocalCA.open_or_create(
        tmp_path / "ca",
        organization="nodecert",
        trust_domain="nodecert.local",
        signer=KMSSigner(client, "k"),
    )
    store = SQLiteStore(tmp_path / "nodecert.db")
    try:
        from tests.kit import issue

        with pytest.raises(BackendUnavailableError, match=code):
            issue(authority(ca, store), "alice", "n1")
        assert store.find(user_id="alice") == []
    finally:
        store.close()


def test_long_messages_go_to_kms_as_their_digest() -> None:
    key = generate_private_key(KeyType.EC_P256)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    client, stubber = _stubbed(der)
    long = b"x" * 5000
    stubber.add_response(
        "sign",
        {"Signature": b"sig", "SigningAlgorithm": "ECDSA_SHA_256", "KeyId": "k"},
        {
            "KeyId": "k",
            "Message": hashlib.sha256(long).digest(),
            "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256",
        },
    )
    stubber.add_response(
        "sign",
        {"Signature": b"sig", "SigningAlgorithm": "ECDSA_SHA_256", "KeyId": "k"},
        {
            "KeyId": "k",
            "Message": b"short",
            "MessageType": "RAW",
            "SigningAlgorithm": "ECDSA_SHA_256",
        },
    )
    stubber.activate()
    signer = KMSSigner(client, "k")
    assert signer.sign(long) == b"sig"
    assert signer.sign(b"short") == b"sig"
    stubber.assert_no_pending_responses()


# Signed by KMS, on the wire.


@pytest.fixture(params=["ECC_NIST_P256", "ECC_NIST_P384", "RSA_2048"])
def kms_env(request: pytest.FixtureRequest, kms: Any, tmp_path: Path) -> Iterator[Env]:
    service = build_service(
        make_settings(tmp_path / "home", ca_kms_key_id=_key(kms, request.param))
    )
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Env(service, client)
    service.close()


def test_certificates_and_crls_signed_in_kms_pass_every_check(kms_env: Env, tmp_path: Path) -> None:
    assert not (kms_env.service.settings.home / "ca" / "ca.key").exists()  # In KMS only.
    issue_and_check_everything(kms_env, tmp_path)


def test_issuance_with_the_key_in_kms_never_runs_on_the_event_loop(
    kms: Any, tmp_path: Path
) -> None:
    # Every certificate is a KMS call over the network: it must go to the thread pool,
    # never block the event loop (a file key, SQLite and the dev issuer stay inline).
    service = build_service(make_settings(tmp_path / "home", ca_kms_key_id=_key(kms)))
    try:
        assert not service.authority.ca.never_waits
        assert not service.inline_issuance
    finally:
        service.close()
    inline = build_service(make_settings(tmp_path / "file"))
    try:
        assert inline.authority.ca.never_waits
        assert inline.inline_issuance
    finally:
        inline.close()
