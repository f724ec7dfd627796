"""The request time budget (nodecert.support.budget) and ACM PCA calls that respect it.

Revocation in the request path must fit the Lambda timeout: once the budget is spent, the
backend refuses to start another PCA call (a transient failure, so the revocation stays
queued for the scheduled drain) instead of being cut off by the platform mid-way.
"""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.stub import Stubber

from nodecert.backends.acmpca.backend import ACMPCABackend, RetryPolicy
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.values import RevocationReason
from nodecert.support.budget import deadline, time_budget
from tests.fakes import FakeTime

CA = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/1"


def test_a_budget_sets_a_deadline_and_nesting_never_extends_it() -> None:
    clock = FakeTime()
    assert deadline() is None
    with time_budget(10, monotonic=clock.monotonic) as outer:
        assert outer == deadline() == 1010.0
        with time_budget(60, monotonic=clock.monotonic):
            assert deadline() == 1010.0
        with time_budget(2, monotonic=clock.monotonic):
            assert deadline() == 1002.0
        assert deadline() == 1010.0
    assert deadline() is None


def test_each_thread_has_its_own_budget() -> None:
    seen: list[float | None] = []
    with time_budget(5):
        worker = threading.Thread(target=lambda: seen.append(deadline()))
        worker.start()
        worker.join()
    assert seen == [None]


@pytest.fixture
def pca():
    clock = FakeTime()
    client = boto3.client(
        "acm-pca", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )

    # Every RevokeCertificate "takes" 150 ms of the fake clock.
    def slow(**_: object) -> None:
        clock.now += 0.15

    client.meta.events.register("before-parameter-build.acm-pca.RevokeCertificate", slow)
    backend = ACMPCABackend(
        client,
        ca_arn=CA,
        organization="o",
        trust_domain="t.example",
        retry=RetryPolicy(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 0.5,
    )
    with Stubber(client) as stub:
        yield backend, stub, clock


def test_no_pca_call_starts_once_the_budget_is_spent(pca) -> None:
    backend, stub, clock = pca
    stub.add_response("revoke_certificate", {})
    with time_budget(0.1, monotonic=clock.monotonic):
        backend.revoke(0x0A, RevocationReason.SUPERSEDED)  # Started in time: 150 ms.
        with pytest.raises(BackendUnavailableError, match="no time left") as caught:
            backend.revoke(0x0B, RevocationReason.SUPERSEDED)
    assert caught.value.retry_after is not None
    stub.assert_no_pending_responses()  # The second never reached PCA.


def test_a_revoke_all_sweep_stops_within_its_budget(pca) -> None:
    """The shape of Administration.finish_revocations: stop at the first CA failure."""
    backend, stub, clock = pca
    for _ in range(200):
        stub.add_response("revoke_certificate", {})
    started = clock.now
    sent = 0
    with time_budget(3.0, monotonic=clock.monotonic):
        for serial in range(1, 201):
            try:
                backend.revoke(serial, RevocationReason.CESSATION_OF_OPERATION)
            except BackendUnavailableError:
                break  # The rest stays queued for the scheduled drain.
            sent += 1
    # 3 s at 150 ms a call: 20 calls (21 when float sums land a hair short of 3 s), and
    # the sweep ends at most one call past its budget.
    assert sent in (20, 21)
    assert clock.now - started <= 3.0 + 0.15
    # Without a budget the same 200 rows would take 30 s: past a 20 s Lambda timeout.


def test_one_budget_entered_twice_is_refused_and_leaves_no_deadline_behind() -> None:
    budget = time_budget(5)
    with budget:
        with pytest.raises(RuntimeError, match="open already"), budget:
            pass
        assert deadline() is not None
    assert deadline() is None
    with budget:  # Closed: it may be used again.
        assert deadline() is not None
    assert deadline() is None
