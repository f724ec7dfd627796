"""The scheduled Lambda (nodecert.aws.sweep) drains a real CA revocation queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodecert.aws import sweep
from nodecert.bootstrap import build_service
from nodecert.core.values import RevocationReason
from tests.kit import issue

from ..conftest import make_settings


def test_the_scheduled_handler_drains_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    service = build_service(make_settings(home))
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    # Queued as a revocation whose CA call failed would leave it: ledger done, CA not told.
    service.administration.outbox.revoke_and_queue(
        [cert.serial], reason=RevocationReason.KEY_COMPROMISE, at=service.authority.clock()
    )
    assert service.administration.outbox.count_pending_revocations() == 1
    monkeypatch.setenv("NODECERT_HOME", str(home))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    sweep._outbox.cache_clear()
    try:
        assert sweep.sweep_handler({"source": "aws.events"}, None)["pending"] == 0
    finally:
        sweep._outbox.cache_clear()
    assert service.administration.outbox.count_pending_revocations() == 0
    service.close()
