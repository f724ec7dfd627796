"""``nodecert renew`` against a live service over real HTTP: when due, forced, watched."""

import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from nodecert.cli import commands as cli
from nodecert.client import Client, ServiceUnreachableError
from nodecert.client.renewal.agent import (
    Backoff,
    KeyMismatchError,
    RenewalClientError,
    RenewalTarget,
    due_at,
    run_deploy_hook,
    watch,
)
from nodecert.core.decision import AccessDeniedError, Decision, DenyReason
from nodecert.core.errors import ConflictError, QuotaExceededError
from nodecert.core.values import RevocationReason
from nodecert.http.app import create_app
from tests.files import unwritable
from tests.kit import ADMIN, LiveServer, issue, write_client
from tests.processes import free_port


def _count(service) -> int:
    rows = service.administration.list_certificates(
        ADMIN, node_id=None, status=None, limit=1000, after=None
    )
    return len(rows)


def _unused() -> Client:
    return Client(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_renew_when_not_due_says_when_and_calls_nothing(tmp_path, service, capsys):
    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    before = cert.read_bytes()
    # Nothing listens on the server given: a call would fail, so exit 0 proves none was made.
    argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", _unused().base_url]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    due = due_at(x509.load_pem_x509_certificate(before))
    assert out.count("\n") == 1 and "not due" in out
    assert due.isoformat(timespec="seconds").replace("+00:00", "Z") in out
    assert cert.read_bytes() == before
    # --renew-before longer than the lifetime makes it due: now the (absent) server is called.
    assert cli.main([*argv, "--renew-before", "30d"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_renew_rewrites_both_files_and_records_the_lineage(tmp_path, service, capsys):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url, "--force"]
        assert cli.main(argv) == 0
        new = x509.load_pem_x509_certificate(cert.read_bytes())
        assert new.serial_number != old.certificate.serial_number
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert key.read_bytes() != old.key_pem
        row = service.authority.ledger.get(format(new.serial_number, "x"))
        assert row.renewed_from == old.serial
        assert "renewed: serial" in capsys.readouterr().out
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        # The renewed pair renews again (the lineage grows); once revoked, it cannot.
        assert cli.main(argv) == 0
        service.administration.revoke(
            ADMIN,
            format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x"),
            RevocationReason.KEY_COMPROMISE,
        )
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "revoked" in err and "HTTP 403" in err and err.count("\n") == 1


def test_renew_checks_the_directory_before_calling_the_service(tmp_path, service, capsys):
    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    before = _count(service)
    with LiveServer(create_app(service)) as server, unwritable(tmp_path):
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--force"]
        assert cli.main([*argv, "--server", server.url]) == 1
    err = capsys.readouterr().err
    assert "cannot write in" in err and err.count("\n") == 1
    # The service was never asked: no successor was issued.
    assert _count(service) == before


def test_renew_reports_unreadable_files(tmp_path, capsys):
    argv = ["renew", "--cert", str(tmp_path / "x.crt"), "--key", str(tmp_path / "x.key")]
    assert cli.main(argv) == 1
    assert "No such file" in capsys.readouterr().err


def test_renew_refuses_a_key_of_another_certificate(tmp_path, service, capsys):
    cert, _ = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    _, other = write_client(
        issue(service.authority, "alice", "n2", admin=service.administration), tmp_path, "n2"
    )
    assert cli.main(["renew", "--cert", str(cert), "--key", str(other), "--force"]) == 1
    assert "does not belong" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["2x", "-1d", "0h", "", "1.5d", "d"])
def test_renew_before_takes_durations_only(tmp_path, value, capsys):
    argv = ["renew", "--cert", "c", "--key", "k", "--renew-before", value]
    with pytest.raises(SystemExit) as usage:
        cli.main(argv)
    assert usage.value.code == 2
    assert "--renew-before" in capsys.readouterr().err


def _clocked(start: datetime) -> tuple[list[datetime], list[float], object]:
    now, sleeps = [start], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += timedelta(seconds=seconds)

    return now, sleeps, sleep


def test_watch_renews_when_due_with_jitter_and_backs_off(tmp_path, service, caplog):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    target = RenewalTarget(cert=cert, key=key, client=_unused())
    now, sleeps, sleep = _clocked(old.certificate.not_valid_before_utc)
    attempts = []
    failures = [ServiceUnreachableError("down (test)"), QuotaExceededError("busy", retry_after=90)]

    marks = []

    def renew(t):
        attempts.append(now[0])
        marks.append(len(sleeps))
        if failures:
            raise failures.pop(0)
        return old.certificate

    caplog.set_level("INFO", logger="nodecert")
    watch(
        target,
        renew=renew,
        sleep=sleep,
        clock=lambda: now[0],
        jitter=lambda: 0.5,
        backoff=Backoff(first=timedelta(seconds=10)),
        max_renewals=1,
    )
    lifetime = old.certificate.not_valid_after_utc - old.certificate.not_valid_before_utc
    assert attempts[0] == due_at(old.certificate) - lifetime / 40
    assert all(nap <= 3600 for nap in sleeps[: marks[0]])  # Naps of at most an hour.
    assert sleeps[marks[0] :] == [10, 90]  # Backoff, then the service's Retry-After (longer).
    assert len(attempts) == 3
    assert "renews at" in caplog.text and "retry 1 in 10 s" in caplog.text
    assert "renewed" in caplog.text and "PRIVATE KEY" not in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        AccessDeniedError(Decision.deny(DenyReason.REVOKED, "revoked")),
        ConflictError("already renewed"),
        KeyMismatchError("not this key"),
    ],
)
def test_watch_stops_on_what_a_retry_cannot_fix(tmp_path, service, error):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    now, sleeps, sleep = _clocked(old.certificate.not_valid_before_utc)
    marks = []

    def renew(t):
        marks.append(len(sleeps))
        raise error

    with pytest.raises(type(error)):
        watch(
            RenewalTarget(cert=cert, key=key, client=_unused()),
            renew=renew,
            sleep=sleep,
            clock=lambda: now[0],
            jitter=lambda: 0,
        )
    assert marks == [len(sleeps)]  # One attempt, and no retry after it.


def test_watch_survives_files_that_vanish_for_a_while(tmp_path, service):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    saved = cert.read_bytes()
    cert.unlink()
    now, sleeps, sleep = _clocked(old.certificate.not_valid_before_utc)

    def patient_sleep(seconds: float) -> None:
        sleep(seconds)
        if len(sleeps) == 2:
            cert.write_bytes(saved)  # Back after two failed reads (a restore, a remount).

    watch(
        RenewalTarget(cert=cert, key=key, client=_unused()),
        renew=lambda t: old.certificate,
        sleep=patient_sleep,
        clock=lambda: now[0],
        jitter=lambda: 0,
        max_renewals=1,
    )
    assert sleeps[:2] == [10, 20]


def test_watch_gives_up_once_the_certificate_expired(tmp_path, service):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    end = old.certificate.not_valid_after_utc

    def renew(t):
        raise ServiceUnreachableError("down (test)")

    with pytest.raises(RenewalClientError, match="expired"):
        watch(
            RenewalTarget(cert=cert, key=key, client=_unused()),
            renew=renew,
            sleep=lambda s: None,
            clock=lambda: end + timedelta(seconds=1),
        )


def test_watch_renews_for_real_and_logs_through_the_cli(tmp_path, service, capsys):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    with LiveServer(create_app(service)) as server:
        target = RenewalTarget(cert=cert, key=key, client=Client(server.url))
        now = [datetime.now(UTC) + timedelta(days=6)]
        watch(target, sleep=lambda s: None, clock=lambda: now[0], max_renewals=1)
    renewed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert renewed.serial_number != old.certificate.serial_number


def test_the_deploy_hook_runs_after_a_renewal_with_the_new_files(tmp_path, service, capsys):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    seen = tmp_path / "seen"
    hook = f'printf "%s %s %s" "$RENEWED_CERT" "$RENEWED_KEY" "$RENEWED_SERIAL" > {seen}'
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url, "--force"]
        assert cli.main([*argv, "--deploy-hook", hook]) == 0
        new = x509.load_pem_x509_certificate(cert.read_bytes())
        assert seen.read_text() == f"{cert} {key} {new.serial_number:x}"
        # A failing hook: the files are renewed all the same, and the exit status says so.
        assert cli.main([*argv, "--deploy-hook", "exit 3"]) == 1
        assert "renewed, but --deploy-hook: exited with status 3" in capsys.readouterr().err
        newer = x509.load_pem_x509_certificate(cert.read_bytes())
        assert newer.serial_number != new.serial_number


def test_a_hook_that_fails_during_watch_is_logged_and_the_watch_goes_on(tmp_path, service, caplog):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    target = RenewalTarget(cert=cert, key=key, client=_unused())
    ran = []
    now, _, sleep = _clocked(old.certificate.not_valid_before_utc)

    def hook(certificate):
        ran.append(certificate.serial_number)
        run_deploy_hook("exit 7", target, certificate)

    watch(
        target,
        renew=lambda t: old.certificate,
        sleep=sleep,
        clock=lambda: now[0],
        max_renewals=2,
        after_renewal=hook,
    )
    assert ran == [old.certificate.serial_number] * 2
    assert caplog.text.count("--deploy-hook: exited with status 7") == 2


def test_a_hook_that_hangs_is_stopped(tmp_path, service, monkeypatch):
    from nodecert.client.renewal import _hook as renew_client

    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    monkeypatch.setattr(renew_client, "_HOOK_TIMEOUT_S", 0.2)
    with pytest.raises(RenewalClientError, match="still running after 0 s; stopped"):
        run_deploy_hook(
            "sleep 30", RenewalTarget(cert=cert, key=key, client=_unused()), old.certificate
        )


def test_watch_never_renews_in_the_first_tenth_of_a_lifetime(tmp_path, service):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    start = old.certificate.not_valid_before_utc
    now, _, sleep = _clocked(start)
    attempts = []

    def renew(t):
        attempts.append(now[0])
        return old.certificate

    watch(
        RenewalTarget(cert=cert, key=key, client=_unused()),
        renew=renew,
        sleep=sleep,
        clock=lambda: now[0],
        jitter=lambda: 0,
        renew_before=timedelta(days=30),  # "Always due": without the floor, a tight loop.
        max_renewals=1,
    )
    lifetime = old.certificate.not_valid_after_utc - start
    assert attempts == [start + lifetime / 10]


def test_watch_follows_a_certificate_replaced_while_it_sleeps(tmp_path, service, caplog):
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    now, sleeps, sleep = _clocked(old.certificate.not_valid_before_utc)
    replacement = issue(service.authority, "alice", "n1", admin=service.administration)
    attempts = []

    def nap(seconds: float) -> None:
        sleep(seconds)
        if len(sleeps) == 3:  # Someone ran `nodecert renew --force` by hand meanwhile.
            write_client(replacement, tmp_path, "n1")

    def renew(t):
        attempts.append(x509.load_pem_x509_certificate(t.cert.read_bytes()).serial_number)
        return replacement.certificate

    caplog.set_level("INFO", logger="nodecert")
    watch(
        RenewalTarget(cert=cert, key=key, client=_unused()),
        renew=renew,
        sleep=nap,
        clock=lambda: now[0],
        jitter=lambda: 0,
        max_renewals=1,
    )
    assert attempts == [replacement.certificate.serial_number]
    assert caplog.text.count("renews at") == 2  # Logged once per certificate, not per nap.


def test_force_and_watch_together_is_a_usage_error(tmp_path, capsys):
    argv = ["renew", "--cert", "c", "--key", "k", "--watch", "--force"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        "nodecert: error: --force: not with --watch (it renews whenever due)\n"
    )
