"""The one seam of group commit: the ledger returns a Commit, and only the caller that
asked for it (the fast path) goes on before it completes."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from nodecert.core.errors import ConflictError
from nodecert.core.values import CertificateRecord, Commit, Principal
from nodecert.issuing.authority import IssueRequest
from nodecert.testing import MemoryStore
from tests.kit import ADMIN, admin_of, authority, new_ca


class QueuedLedger(MemoryStore):
    """A MemoryStore whose commits complete only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Future[None]] = []

    def record(self, record: CertificateRecord) -> Commit:
        super().record(record)
        future: Future[None] = Future()
        self.pending.append(future)
        return Commit(future)


@pytest.fixture
def setup(tmp_path: Any) -> Any:
    store = QueuedLedger()
    auth = authority(new_ca(tmp_path / "ca"), store)
    admin_of(auth).put_node(ADMIN, "n1", "alice")
    return auth, store


def _request() -> IssueRequest:
    return IssueRequest(node_id="n1", request_id="r", key_type="ec-p256")


def test_issue_pending_returns_before_the_row_is_durable(setup: Any) -> None:
    auth, store = setup
    issued, commit = auth.issue_pending(Principal("alice"), _request())
    assert len(store.pending) == 1 and not store.pending[0].done()
    with pytest.raises(TimeoutError):
        commit.wait(timeout=0.01)
    store.pending[0].set_result(None)
    commit.wait(timeout=10)
    assert issued.record.serial in store.rows


def test_issue_waits_for_the_commit_and_raises_what_it_fails_with(setup: Any) -> None:
    auth, store = setup

    def fail_the_commit(record: CertificateRecord) -> Commit:
        return Commit.failed(ConflictError(f"serial: {record.serial} is already recorded"))

    store.record = fail_the_commit  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="already recorded"):
        auth.issue(Principal("alice"), _request())
