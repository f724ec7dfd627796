"""One end-to-end check for every place the local CA's issuing key can live (file, KMS, HSM).

Issue a certificate through the service, then hold it, its chain and the CRL to every check
a relying party makes: pkilint, ``openssl verify``, a real mutual-TLS handshake, the
node-side decision, and a revocation that the signed CRL carries.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import Env
from tests.integration.test_mtls import pkilint
from tests.integration.test_two_tier import _lint_crl
from tests.tls import connect, mtls_server


def issue_and_check_everything(env: Env, tmp_path: Path) -> dict[str, Any]:
    """Issue for alice on n1 and check the certificate, its chain and the CRL; return it."""
    env.add_node("n1", "alice")
    issued = env.issue("alice", "n1", keyType="ec-p256")
    leaf = x509.load_pem_x509_certificate(str(issued["certificate"]).encode())
    intermediate, root = env.service.authority.ca.chain()
    leaf.verify_directly_issued_by(intermediate)
    for certificate in (leaf, intermediate, root):
        der = certificate.public_bytes(serialization.Encoding.DER)
        assert pkilint("lint_pkix_cert", der, tmp_path) == "", certificate.subject
    if shutil.which("openssl"):
        (tmp_path / "ca.pem").write_bytes(env.client.get("/v1/ca").content)
        (tmp_path / "leaf.pem").write_text(str(issued["certificate"]))
        done = subprocess.run(
            ["openssl", "verify", "-purpose", "sslclient", "-CAfile", "ca.pem", "leaf.pem"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    with mtls_server(env.client.get("/v1/ca/roots").content, tmp_path) as (port, ca, seen):
        presented = str(issued["certificate"]) + str(issued["certificateChain"])
        assert connect(port, ca, presented, str(issued["privateKey"]), tmp_path) == b"hello"
        seen.done.wait(10)
    assert env.service.decider.decide(leaf, "n1").allowed
    # The CRL, signed by the same key.
    serial = str(issued["serialNumber"])
    admin = env.auth("root", admin=True)
    revoked = env.client.post(f"/v1/certificates/{serial}/revoke", headers=admin, json={})
    assert revoked.status_code == 200
    der = env.client.get("/v1/crl").content
    crl = x509.load_der_x509_crl(der)
    assert crl.issuer == intermediate.subject
    assert crl.is_signature_valid(intermediate.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert _lint_crl(der, tmp_path) == ""
    return issued
