"""Test doubles shared by several test modules (the shipped ones are in nodecert.testing)."""

from __future__ import annotations

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
