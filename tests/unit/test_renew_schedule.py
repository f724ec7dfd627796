"""When a certificate is due, how long to back off, what is worth a retry: pure functions."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.cli.common import duration
from nodecert.client import ServiceUnreachableError
from nodecert.client.renewal.agent import (
    Backoff,
    KeyMismatchError,
    RenewalClientError,
    due_at,
    is_permanent,
)
from nodecert.core.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    QuotaExceededError,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
_KEY = ec.generate_private_key(ec.SECP256R1())


def _certificate(lifetime: timedelta) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(START + lifetime)
        .sign(_KEY, hashes.SHA256())
    )


def test_due_in_the_last_third_by_default() -> None:
    assert due_at(_certificate(timedelta(days=6))) == START + timedelta(days=4)
    assert due_at(_certificate(timedelta(hours=3))) == START + timedelta(hours=2)


def test_due_renew_before_the_end() -> None:
    week = _certificate(timedelta(days=7))
    assert due_at(week, renew_before=timedelta(days=2)) == START + timedelta(days=5)
    assert due_at(week, renew_before=timedelta(hours=36)) == START + timedelta(days=5, hours=12)
    # Longer than the lifetime: due from the start, never before it.
    assert due_at(week, renew_before=timedelta(days=30)) == START


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2d", 172_800), ("36h", 129_600), ("1d12h", 129_600), ("90m", 5_400), ("45s", 45)],
)
def test_durations(text: str, seconds: int) -> None:
    assert duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "2x", "-1d", "0h", "1.5d", "d", "2 d", "1d-2h"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_backoff_doubles_up_to_its_cap_and_honours_retry_after() -> None:
    backoff = Backoff(first=timedelta(seconds=10), cap=timedelta(minutes=5))
    assert [backoff.delay(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.delay(1, retry_after=120) == 120
    assert backoff.delay(10_000) == 300


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (AuthorizationError("certificate: revoked"), True),
        (ConflictError("already renewed"), True),
        (KeyMismatchError("not this key"), True),
        (ServiceUnreachableError("down"), False),
        (QuotaExceededError("busy"), False),
        (AuthenticationError("token: not valid yet"), False),
        (RenewalClientError("n1.crt: No such file"), False),
    ],
)
def test_what_a_retry_cannot_fix(error: Exception, permanent: bool) -> None:
    assert is_permanent(error) is permanent
