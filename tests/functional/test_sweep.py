"""The scheduled revocation sweep (nodecert.aws.sweep): batches, progress, time left."""

from __future__ import annotations

from nodecert.aws import sweep
from nodecert.core.identity import format_serial
from nodecert.core.values import Principal, RevocationReason
from tests.nodeside import issue


class Outbox:
    """A CA outbox of ``pending`` revocations; ``stuck`` stops the CA from taking any."""

    def __init__(self, pending: int, *, stuck: bool = False) -> None:
        self.pending, self.stuck, self.limits = pending, stuck, []

    def finish_revocations(self, *, limit: int = 100) -> int:
        self.limits.append(limit)
        if not self.stuck:
            self.pending -= min(limit, self.pending)
        return self.pending


def test_a_stuck_ca_stops_the_sweep_after_one_batch_without_progress(caplog):
    outbox = Outbox(250, stuck=True)
    assert sweep.drain(outbox) == {"pending": 250, "batches": 2}
    assert "still pending" in caplog.text


def test_the_sweep_stops_when_the_invocation_is_nearly_over():
    outbox = Outbox(1000)
    left = iter([120_000, 60_000, sweep.SAFETY_MS - 1])
    assert sweep.drain(outbox, lambda: next(left)) == {"pending": 700, "batches": 3}


def test_the_sweep_drains_in_batches_until_nothing_is_pending():
    outbox = Outbox(250)
    assert sweep.drain(outbox, lambda: 10**6) == {"pending": 0, "batches": 3}
    assert outbox.limits == [sweep.BATCH] * 3


def test_the_handler_uses_the_lambda_context_clock(monkeypatch):
    outbox = Outbox(500)
    monkeypatch.setattr(sweep, "_outbox", lambda: outbox)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 0

    assert sweep.sweep_handler({}, Context()) == {"pending": 400, "batches": 1}


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
