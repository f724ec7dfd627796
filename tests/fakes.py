"""Test doubles shared by several test modules (the shipped ones are in nodecert.testing)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# An ACM PCA certificate authority for botocore's Stubber: never contacted.
STUB_CA_ARN = (
    "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
    "11111111-1111-1111-1111-111111111111"
)


class FakeTime:
    """A monotonic clock that only ``sleep`` moves: retries and deadlines without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def race(count: int, work: Callable[[int], T], *, timeout: float = 60.0) -> list[T]:
    """Run ``work(0) .. work(count - 1)`` in ``count`` threads that start together.

    The threads are started one after the other and released together by a barrier:
    threads started all at once can trip over each other installing the coverage tracer
    ("Cannot install a trace function while another trace function is being installed",
    Python 3.11), which then looks like a failure of the code under test.

    Returns:
        Each call's result, in order. The first exception any call raised is raised here.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int, started: threading.Event) -> None:
        started.set()
        try:
            barrier.wait(timeout=timeout)
            results[i] = work(i)
        except BaseException as exc:  # Reported to the test below.
            errors.append(exc)

    threads = []
    for i in range(count):
        started = threading.Event()
        thread = threading.Thread(target=run, args=(i, started), daemon=True)
        thread.start()
        if not started.wait(timeout=timeout):
            raise TimeoutError(f"thread {i} did not start")
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=timeout)
        if thread.is_alive():
            raise TimeoutError("a racing thread did not finish")
    if errors:
        raise errors[0]
    return results


def stubbed_pca() -> tuple[Any, Any]:
    """A real botocore ``acm-pca`` client (never sent anywhere) and its ``Stubber``."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "acm-pca", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


def describe_ca(
    stub: Any,
    arn: str = STUB_CA_ARN,
    key_algorithm: str = "EC_prime256v1",
    status: str = "ACTIVE",
) -> None:
    """Queue ``DescribeCertificateAuthority``'s answer for ``arn`` on ``stub``."""
    stub.add_response(
        "describe_certificate_authority",
        {
            "CertificateAuthority": {
                "Arn": arn,
                "Status": status,
                "CertificateAuthorityConfiguration": {
                    "KeyAlgorithm": key_algorithm,
                    "SigningAlgorithm": "SHA256WITHECDSA",
                    "Subject": {"CommonName": "test CA"},
                },
            }
        },
        {"CertificateAuthorityArn": arn},
    )


def pca_subordinate(csr: Any, root_key: Any, root: Any, *, days: int = 365, ca: bool = True) -> Any:
    """What ACM PCA's ``SubordinateCACertificate_PathLen0/V1`` makes of ``csr``, signed by
    ``root_key`` acting as PCA's root: CA:TRUE path length 0 (critical), KeyUsage
    digitalSignature, keyCertSign and cRLSign (critical), SKI, AKI (AWS, template
    definitions). ``ca=False`` makes an end-entity certificate instead, as a PCA that did
    not apply the template would.
    """
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(root.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
