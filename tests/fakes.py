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
