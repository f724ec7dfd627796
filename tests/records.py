"""Ledger rows for store tests: one certificate record, with only what a test varies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nodecert.core.values import CertificateRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def certificate(
    serial: str, *, user: str = "alice", node: str = "n1", minutes: int = 0, **fields: Any
) -> CertificateRecord:
    """A week-long EC certificate of ``user``'s ``node``, created ``minutes`` after T0."""
    created = T0 + timedelta(minutes=minutes)
    return CertificateRecord(
        serial=serial,
        user_id=user,
        node_id=node,
        key_type="ec-p256",
        not_before=created - timedelta(minutes=5),
        not_after=created + timedelta(days=7),
        fingerprint_sha256="ab" * 32,
        request_id=f"req-{serial}",
        created_at=created,
        **fields,
    )
