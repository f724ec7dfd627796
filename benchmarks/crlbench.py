"""The CRL of the local CA with many revoked certificates: build time and cached reply.

A SQLite ledger on a temporary directory is filled with ``count`` revoked, unexpired rows
(written in one go through the store's group commit), then ``GET /v1/crl`` is timed once
cold (query, build, sign) and then warm (the cached, signed CRL), in process.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["CRLResult", "measure_crl"]


@dataclass(frozen=True)
class CRLResult:
    """Seconds to build the CRL of ``count`` revoked certificates; ms for a cached reply."""

    count: int
    build_s: float
    cached_ms: float
    crl_bytes: int


def measure_crl(count: int = 100_000, *, workdir: Path | None = None) -> CRLResult:
    """Fill a ledger with ``count`` revoked rows and time the CRL, cold then cached."""
    from nodecert.bootstrap import build_service
    from nodecert.core.config import Settings
    from nodecert.core.values import CertificateRecord, CertificateStatus, RevocationReason
    from nodecert.http.public_routes import PublicRoutes

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        service = build_service(Settings(home=Path(tmp)))
        try:
            store = service.authority.ledger
            now = datetime.now(UTC)
            commits = [
                store.record(
                    CertificateRecord(
                        serial=secrets.token_hex(16),
                        user_id=f"u{i % 1000}",
                        node_id=f"n{i}",
                        key_type="EC_P256",
                        not_before=now - timedelta(days=1),
                        not_after=now + timedelta(days=30),
                        fingerprint_sha256=secrets.token_hex(32),
                        request_id=f"r{i}",
                        created_at=now,
                        status=CertificateStatus.REVOKED,
                        revoked_at=now,
                        revocation_reason=RevocationReason.KEY_COMPROMISE,
                    )
                )
                for i in range(count)
            ]
            for commit in commits:
                commit.wait()
            routes = PublicRoutes.for_service(service)
            started = time.perf_counter()
            reply = routes.crl()
            build_s = time.perf_counter() - started
            samples = []
            for _ in range(50):
                started = time.perf_counter()
                routes.crl()
                samples.append((time.perf_counter() - started) * 1000)
            return CRLResult(count, build_s, statistics.median(samples), len(reply.body))
        finally:
            service.close()
