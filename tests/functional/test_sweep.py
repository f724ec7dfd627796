"""The scheduled revocation sweep (nodecert.aws.sweep): batches, progress, time left."""

from __future__ import annotations

from nodecert.aws import sweep
from nodecert.bootstrap import build_service
from nodecert.core.errors import BackendUnavailableError
from nodecert.core.identity import format_serial
from nodecert.core.values import Principal, RevocationReason
from tests.kit import issue

from ..conftest import make_settings


class Outbox:
    """A CA outbox of ``pending`` revocations; ``stuck`` stops the CA from taking any."""

    def __init__(self, pending: int, *, stuck: bool = False) -> None:
        self.pending, self.stuck, self.limits = pending, stuck, []

    def finish_revocations(self, *, limit: int = 100, failed: set[str] | None = None) -> int:
        self.limits.append(limit)
        if not self.stuck:
            self.pending -= min(limit, self.pending)
        return self.pending


def test_a_stuck_ca_stops_the_sweep_after_one_batch_without_progress(caplog):
    outbox = Outbox(250, stuck=True)
    assert sweep.drain(outbox) == {
        "pending": 250,
        "batches": 2,
        "failed": 0,
        "stopped": "no-progress",
    }
    assert "still pending" in caplog.text


def test_the_sweep_stops_when_the_invocation_is_nearly_over():
    outbox = Outbox(1000)
    # The first look sets the CA calls' budget; then one look after each batch.
    left = iter([600_000, 120_000, 60_000, sweep.SAFETY_MS - 1])
    assert sweep.drain(outbox, lambda: next(left)) == {
        "pending": 700,
        "batches": 3,
        "failed": 0,
        "stopped": "time",
    }


def test_the_sweep_drains_in_batches_until_nothing_is_pending():
    outbox = Outbox(250)
    assert sweep.drain(outbox, lambda: 10**6) == {
        "pending": 0,
        "batches": 3,
        "failed": 0,
        "stopped": "empty",
    }
    assert outbox.limits == [sweep.BATCH] * 3


def test_the_handler_uses_the_lambda_context_clock(monkeypatch):
    outbox = Outbox(500)
    monkeypatch.setattr(sweep, "_outbox", lambda: outbox)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 0

    assert sweep.sweep_handler({}, Context()) == {
        "pending": 400,
        "batches": 1,
        "failed": 0,
        "stopped": "time",
    }


def test_the_handler_drains_the_service_outbox(tmp_path, monkeypatch):
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path))
    sweep._outbox.cache_clear()
    try:
        from nodecert.bootstrap import build_service, settings_from_environment

        service = build_service(settings_from_environment())
        authority = service.authority
        cert = issue(authority, "alice", "n1", admin=service.administration)
        serial = format_serial(cert.certificate.serial_number)
        service.administration.revoke(Principal("alice"), serial, RevocationReason.KEY_COMPROMISE)
        assert sweep.sweep_handler({}, None)["pending"] == 0
    finally:
        sweep._outbox.cache_clear()


class Refusing:
    """A CA that refuses the revocations of ``bad`` serials (a poisoned item each)."""

    def __init__(self, ca, bad: set[int]) -> None:
        self.ca, self.bad, self.asked = ca, bad, []

    def revoke(self, serial: int, reason, *, issuer=None) -> None:
        self.asked.append(serial)
        if serial in self.bad:
            raise BackendUnavailableError("ca: RevokeCertificate failed (InvalidStateException)")
        self.ca.revoke(serial, reason, issuer=issuer)


def _queued(service, count: int) -> list[int]:
    serials = []
    for index in range(count):
        cert = issue(service.authority, "alice", f"n{index}", admin=service.administration)
        serials.append(cert.certificate.serial_number)
    service.administration.outbox.revoke_and_queue(
        [format_serial(s) for s in serials],
        reason=RevocationReason.KEY_COMPROMISE,
        at=service.authority.clock(),
    )
    return serials


def test_poisoned_revocations_at_the_head_of_the_queue_do_not_hold_up_the_rest(
    tmp_path, monkeypatch, caplog
):
    service = build_service(make_settings(tmp_path / "home"))
    serials = _queued(service, 9)
    # Queued together, they are taken in serial order: the first five (more than
    # CA_STRIKES in a row) are refused.
    serials.sort(key=format_serial)
    oldest = serials[:5]
    ca = Refusing(service.administration.ca, set(oldest))
    monkeypatch.setattr(service.administration, "ca", ca)
    monkeypatch.setattr(sweep, "BATCH", 2)

    result = sweep.drain(service.administration)

    assert result["pending"] == 5 and result["failed"] == 5
    assert result["stopped"] == "no-progress"
    assert ca.asked[:3] == oldest[:3]  # Three strikes end the first batch...
    assert set(serials[5:]) <= set(ca.asked)  # ...and the next batches reach the rest.
    assert format_serial(oldest[0]) in caplog.text
    service.close()


def test_a_ca_that_refuses_everything_stops_the_run_after_max_failures(tmp_path, monkeypatch):
    service = build_service(make_settings(tmp_path / "home"))
    serials = _queued(service, 30)
    ca = Refusing(service.administration.ca, set(serials))
    monkeypatch.setattr(service.administration, "ca", ca)

    result = sweep.drain(service.administration)

    assert result["stopped"] == "failures" and result["pending"] == 30
    assert len(ca.asked) == len(set(ca.asked)) < 30  # Each asked once; not all hammered.
    service.close()


def test_nodecert_serves_drainer_gets_past_refusals_at_the_head_of_the_queue(tmp_path, monkeypatch):
    from nodecert.server.drainer import RevocationDrainer

    service = build_service(make_settings(tmp_path / "home"))
    serials = sorted(_queued(service, 8), key=format_serial)
    ca = Refusing(service.administration.ca, set(serials[:4]))
    monkeypatch.setattr(service.administration, "ca", ca)
    drainer = RevocationDrainer(service.administration.finish_revocations)

    assert drainer.run_once() == 8  # Three refusals in a row end the first run.
    assert drainer.run_once() == 4  # The next skips them: the fourth refused, the rest sent.
    ca.bad.clear()
    assert drainer.run_once() == 4  # Nothing new: the refused are tried again next.
    assert drainer.run_once() == 0
    service.close()
