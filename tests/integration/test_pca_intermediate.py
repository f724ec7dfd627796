"""The root in ACM Private CA, issuing locally (issue 19): ``ca rotate --csr-out``, then
``ca sign-intermediate --acmpca-arn``, then ``ca rotate --install CERT --new-root``.

End to end with botocore's Stubber standing in for PCA: the test's own root, acting as
"PCA's root", signs the CSR with the profile of ``SubordinateCACertificate_PathLen0/V1``,
and the certificates the home issues next are checked on the wire (``openssl verify``,
pkilint, a real mutual-TLS handshake against PCA's root alone). moto's answer to the same
call is shown last: it does not apply the template, and the command refuses it.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.backends.acmpca.intermediate import SUBORDINATE_TEMPLATE_ARN, subordinate_token
from nodecert.backends.local.hierarchy import make_root
from nodecert.backends.local.home import key_id
from nodecert.cli import main

from ..conftest import Env, make_settings
from ..fakes import pca_subordinate, stubbed_pca
from ..tls import connect, mtls_server
from .test_mtls import pkilint
from .test_two_tier import _lint_crl

ARN = (
    "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
    "11111111-1111-1111-1111-111111111111"
)
OPENSSL = shutil.which("openssl")


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _leaf(issued: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(str(issued["certificate"]).encode())


def _handshake(issued: dict[str, Any], tmp_path: Path, trust: bytes) -> bytes:
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


def _queue_pca(stub: Any, csr_pem: bytes, root_key: Any, root: x509.Certificate) -> None:
    """What PCA answers for one signing with the subordinate template."""
    csr = x509.load_pem_x509_csr(csr_pem)
    stub.add_response(
        "describe_certificate_authority",
        {
            "CertificateAuthority": {
                "Arn": ARN,
                "Type": "ROOT",
                "Status": "ACTIVE",
                "UsageMode": "GENERAL_PURPOSE",
                "CertificateAuthorityConfiguration": {
                    "KeyAlgorithm": "EC_prime256v1",
                    "SigningAlgorithm": "SHA256WITHECDSA",
                    "Subject": {"CommonName": "Platform root CA"},
                },
            }
        },
        {"CertificateAuthorityArn": ARN},
    )
    stub.add_response(
        "get_certificate_authority_certificate",
        {"Certificate": _pem(root)},
        {"CertificateAuthorityArn": ARN},
    )
    certificate_arn = ARN + "/certificate/00112233445566778899aabbccddeeff"
    stub.add_response(
        "issue_certificate",
        {"CertificateArn": certificate_arn},
        {
            "CertificateAuthorityArn": ARN,
            "Csr": csr_pem,
            "SigningAlgorithm": "SHA256WITHECDSA",
            "TemplateArn": SUBORDINATE_TEMPLATE_ARN,
            "Validity": {"Type": "DAYS", "Value": 1095},
            "IdempotencyToken": subordinate_token(
                ARN, csr.public_bytes(serialization.Encoding.DER), 1095
            ),
        },
    )
    stub.add_client_error("get_certificate", "RequestInProgressException", http_status_code=400)
    stub.add_response(
        "get_certificate",
        {
            "Certificate": _pem(pca_subordinate(csr, root_key, root, days=1095)),
            "CertificateChain": _pem(root),
        },
        {"CertificateAuthorityArn": ARN, "CertificateArn": certificate_arn},
    )


def test_root_in_acm_pca_issue_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from nodecert.bootstrap import build_service
    from nodecert.http.app import create_app

    home = tmp_path / "home"
    monkeypatch.setenv("NODECERT_HOME", str(home))
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["ca", "init", "--root-key-out", str(tmp_path / "old-root.key")]) == 0
    pca_key = ec.generate_private_key(ec.SECP256R1())
    pca_root = make_root(pca_key, "Platform", datetime.now(UTC))
    client_pca, stub = stubbed_pca()
    # The command makes its client through the one factory: it gets the stubbed one.
    monkeypatch.setattr("nodecert.support.awsclients.make_client", lambda *_a, **_k: client_pca)
    service = build_service(make_settings(home))
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            env = Env(service, client)
            env.add_node("n1", "alice")
            old = env.issue("alice", "n1", keyType="ec-p256")
            old_root = x509.load_pem_x509_certificate((home / "ca" / "root.crt").read_bytes())
            csr, chain = tmp_path / "next.csr", tmp_path / "next-chain.pem"
            assert main(["ca", "rotate", "--csr-out", str(csr)]) == 0
            # Options that do not go together.
            sign = ["ca", "sign-intermediate", str(csr), "--out", str(chain)]
            assert main([*sign, "--acmpca-arn", ARN, "--root-key", "k"]) == 2
            assert main(sign) == 2
            with stub:
                _queue_pca(stub, csr.read_bytes(), pca_key, pca_root)
                assert main([*sign, "--acmpca-arn", ARN]) == 0
                stub.assert_no_pending_responses()
            assert "--new-root" in capsys.readouterr().out
            written = x509.load_pem_x509_certificates(chain.read_bytes())
            assert written[1:] == [pca_root]
            # Another root is not taken silently: the home stays as it was.
            before = (home / "ca" / "ca.crt").read_bytes()
            assert main(["ca", "rotate", "--install", str(chain)]) == 1
            assert "add --new-root" in capsys.readouterr().err
            # The intermediate alone: checked against the home's root, which did not sign it.
            bare = tmp_path / "bare.pem"
            bare.write_text(_pem(written[0]))
            assert main(["ca", "rotate", "--install", str(bare)]) == 1
            assert "the root did not sign it" in capsys.readouterr().err
            assert (home / "ca" / "ca.crt").read_bytes() == before
            assert main(["ca", "rotate", "--install", str(chain), "--new-root"]) == 0
            new = env.issue("alice", "n1", keyType="ec-p256")
            assert _leaf(new).issuer == written[0].subject
            # GET /v1/ca/roots: PCA's root, and the old one while its certificates live.
            roots = x509.load_pem_x509_certificates(client.get("/v1/ca/roots").content)
            assert set(roots) == {pca_root, old_root}
            for issued in (old, new):
                assert env.service.decider.decide(_leaf(issued), "n1").allowed
            # On the wire: pkilint, openssl verify and a handshake against PCA's root alone.
            assert pkilint("lint_pkix_cert", _der(written[0]), tmp_path) == ""
            assert pkilint("lint_pkix_cert", _der(_leaf(new)), tmp_path) == ""
            if OPENSSL is not None:
                (tmp_path / "pca-root.pem").write_text(_pem(pca_root))
                (tmp_path / "intermediate.pem").write_text(_pem(written[0]))
                (tmp_path / "leaf.pem").write_text(str(new["certificate"]))
                command = [OPENSSL, "verify", "-purpose", "sslclient", "-CAfile", "pca-root.pem"]
                verified = subprocess.run(
                    [*command, "-untrusted", "intermediate.pem", "leaf.pem"],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert verified.returncode == 0, verified.stdout + verified.stderr
            trust = _pem(pca_root).encode()
            assert _handshake(new, tmp_path, trust) == b"hello"
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                _handshake(old, tmp_path, trust)  # The old root's certificate: foreign here.
            # The next rotation stays under PCA's root: no --new-root.
            capsys.readouterr()
            csr2, chain2 = tmp_path / "next2.csr", tmp_path / "next2-chain.pem"
            assert main(["ca", "rotate", "--csr-out", str(csr2)]) == 0
            with stub:
                _queue_pca(stub, csr2.read_bytes(), pca_key, pca_root)
                sign2 = ["ca", "sign-intermediate", str(csr2), "--out", str(chain2)]
                assert main([*sign2, "--acmpca-arn", ARN]) == 0
            assert main(["ca", "rotate", "--install", str(chain2), "--new-root"]) == 1
            assert "no new root" in capsys.readouterr().err
            assert main(["ca", "rotate", "--install", str(chain2)]) == 0
            third = env.issue("alice", "n1", keyType="ec-p256")
            assert _handshake(third, tmp_path, trust) == b"hello"
            # Revocation: the CRL of the PCA-signed intermediate is its own, and clean.
            admin = env.auth("root", admin=True)
            serial = str(new["serialNumber"])
            reply = client.post(f"/v1/certificates/{serial}/revoke", headers=admin, json={})
            assert reply.status_code == 200
            assert env.service.decider.decide(_leaf(new), "n1").reason.value == "revoked"  # type: ignore[union-attr]
            crl_der = client.get("/v1/crl", params={"issuer": key_id(written[0])}).content
            crl = x509.load_der_x509_crl(crl_der)
            assert crl.issuer == written[0].subject
            assert crl.is_signature_valid(written[0].public_key())  # type: ignore[arg-type]
            assert crl.get_revoked_certificate_by_serial_number(_leaf(new).serial_number)
            assert _lint_crl(crl_der, tmp_path) == ""
    finally:
        service.close()


def test_moto_does_not_apply_the_subordinate_template_and_the_command_refuses_it(
    aws_env: None,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cryptography.hazmat.primitives import hashes

    from nodecert.backends.local.hierarchy import ca_name
    from nodecert.support.awsclients import make_client

    from .test_acmpca_moto import ROOT_TEMPLATE

    pca = make_client("acm-pca", region="eu-west-1", max_attempts=1, endpoint_url=moto_endpoint)
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"Organization": "Platform", "CommonName": "moto root"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    own_csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    own = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=own_csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Type": "YEARS", "Value": 1},
    )["CertificateArn"]
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn,
        Certificate=pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=own)[
            "Certificate"
        ].encode(),
    )
    key = ec.generate_private_key(ec.SECP256R1())
    csr_pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(ca_name("Example", "issuing CA"))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    # What moto answers for the subordinate template: an end-entity certificate (no
    # BasicConstraints, no KeyUsage), whatever the template says.
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr_pem,
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=SUBORDINATE_TEMPLATE_ARN,
        Validity={"Type": "DAYS", "Value": 30},
    )["CertificateArn"]
    answer = x509.load_pem_x509_certificate(
        pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=issued)[
            "Certificate"
        ].encode()
    )
    with pytest.raises(x509.ExtensionNotFound):
        answer.extensions.get_extension_for_class(x509.BasicConstraints)
    # The command, over real HTTP: the region from NODECERT_AWS_REGION, the endpoint from
    # botocore's own configuration. It refuses moto's answer and writes nothing.
    monkeypatch.setenv("NODECERT_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ACM_PCA", moto_endpoint)
    (tmp_path / "next.csr").write_bytes(csr_pem)
    out = tmp_path / "out.pem"
    sign = ["ca", "sign-intermediate", str(tmp_path / "next.csr"), "--out", str(out)]
    # moto reports every CA in short-lived mode (it does not model UsageMode): refused
    # before anything is issued, as a real short-lived CA would be.
    assert main([*sign, "--acmpca-arn", arn, "--days", "30"]) == 1
    assert "short-lived-mode CA" in capsys.readouterr().err
    # Made general-purpose in moto's own model (its server runs in this process), the
    # command goes through to IssueCertificate, then refuses moto's end-entity answer.
    from moto.acmpca.models import acmpca_backends

    account, region = arn.split(":")[4], arn.split(":")[3]
    authorities = acmpca_backends[account][region].certificate_authorities
    authorities[arn].usage_mode = "GENERAL_PURPOSE"
    assert main([*sign, "--acmpca-arn", arn, "--days", "30"]) == 1
    assert "not an issuing CA" in capsys.readouterr().err
    assert not out.exists()


def test_a_root_key_kept_in_the_home_retires_with_the_old_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodecert.bootstrap import build_service

    home = tmp_path / "home"
    monkeypatch.setenv("NODECERT_HOME", str(home))
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["ca", "init"]) == 0
    build_service(make_settings(home)).close()  # A complete home (its database too).
    old_issuer = x509.load_pem_x509_certificate((home / "ca" / "ca.crt").read_bytes())
    old_root_key = (home / "ca" / "root.key").read_bytes()
    pca_key = ec.generate_private_key(ec.SECP256R1())
    pca_root = make_root(pca_key, "Platform", datetime.now(UTC))
    client_pca, stub = stubbed_pca()
    monkeypatch.setattr("nodecert.support.awsclients.make_client", lambda *_a, **_k: client_pca)
    csr, chain = tmp_path / "next.csr", tmp_path / "chain.pem"
    assert main(["ca", "rotate", "--csr-out", str(csr)]) == 0
    with stub:
        _queue_pca(stub, csr.read_bytes(), pca_key, pca_root)
        sign = ["ca", "sign-intermediate", str(csr), "--acmpca-arn", ARN, "--out", str(chain)]
        assert main(sign) == 0
    assert main(["ca", "rotate", "--install", str(chain), "--new-root"]) == 0
    # The home's root key was the old root's: it moves out of the way with that root.
    retired = home / "ca" / "retired" / key_id(old_issuer)
    assert not (home / "ca" / "root.key").exists()
    assert (retired / "root.key").read_bytes() == old_root_key
    assert (home / "ca" / "root.crt").read_text() == _pem(pca_root)
    capsys.readouterr()
    # A local rotation now needs PCA's signature again: said, not attempted.
    assert main(["ca", "rotate"]) == 1
    assert "the root key is not in" in capsys.readouterr().err


def test_a_root_rotation_killed_after_its_key_was_renamed_keeps_that_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local --new-root stages root.key and root.crt; a PCA root stages no key and drops
    # the home's. Completing the first after a kill must not be taken for the second.
    from nodecert.backends.local import rotation_files
    from nodecert.bootstrap import build_service

    home = tmp_path / "home"
    monkeypatch.setenv("NODECERT_HOME", str(home))
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["ca", "init"]) == 0
    build_service(make_settings(home)).close()
    real_replace = rotation_files.os.replace
    renamed: list[str] = []

    def dies_after_the_first(source: Any, target: Any) -> None:
        if Path(source).parent.name == "next" and Path(target).parent.name != "next":
            if renamed:
                raise KeyboardInterrupt
            renamed.append(Path(target).name)
        real_replace(source, target)

    monkeypatch.setattr(rotation_files.os, "replace", dies_after_the_first)
    assert main(["ca", "rotate", "--new-root"]) == 130
    monkeypatch.setattr(rotation_files.os, "replace", real_replace)
    assert renamed == ["root.key"]
    new_root_key = (home / "ca" / "root.key").read_bytes()
    rotation_files.finish(home / "ca")
    assert (home / "ca" / "root.key").read_bytes() == new_root_key
    assert main(["ca", "rotate"]) == 0  # The new root's key signs the next intermediate.
