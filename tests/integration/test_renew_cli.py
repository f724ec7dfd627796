"""``nodecert renew`` against a live service over real HTTP, and ``--watch`` timing."""

import os
import stat
from datetime import timedelta

import pytest
from cryptography import x509

from nodecert.cli import commands as cli
from nodecert.client.renew import (
    RenewalClientError,
    RenewalTarget,
    renew_at,
    run_deploy_hook,
    watch,
)
from nodecert.core.ports import RevocationReason
from nodecert.http.app import create_app
from tests.nodeside import ADMIN, LiveServer, issue, write_client


def test_renew_rewrites_both_files_and_records_the_lineage(tmp_path, service, capsys):
    old = issue(service.authority, "alice", "n1")
    cert, key = write_client(old, tmp_path, "n1")
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url]
        assert cli.main(argv) == 0
        new = x509.load_pem_x509_certificate(cert.read_bytes())
        assert new.serial_number != old.certificate.serial_number
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert key.read_bytes() != old.key_pem
        row = service.authority.ledger.get(format(new.serial_number, "x"))
        assert row.renewed_from == old.serial
        assert "renewed: serial" in capsys.readouterr().out
        # The renewed pair renews again (the lineage grows); once revoked, it cannot.
        assert cli.main(argv) == 0
        service.authority.revoke(
            ADMIN,
            format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x"),
            RevocationReason.KEY_COMPROMISE,
        )
        assert cli.main(argv) == 1
        assert "revoked" in capsys.readouterr().err


def test_renew_reports_unreadable_files(tmp_path, capsys):
    argv = ["renew", "--cert", str(tmp_path / "x.crt"), "--key", str(tmp_path / "x.key")]
    assert cli.main(argv) == 1
    assert "No such file" in capsys.readouterr().err


def test_watch_renews_at_two_thirds_and_retries_failures(tmp_path, service):
    old = issue(service.authority, "alice", "n1")
    cert, key = write_client(old, tmp_path, "n1")
    target = RenewalTarget(cert=cert, key=key, server="http://unused")
    start = old.certificate.not_valid_before_utc
    now = [start]
    sleeps = []
    attempts = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += timedelta(seconds=seconds)

    def renew(t):
        attempts.append(now[0])
        if len(attempts) == 1:
            raise RenewalClientError("cannot reach (test)")
        return old.certificate

    watch(target, renew=renew, sleep=sleep, clock=lambda: now[0], max_renewals=1)
    assert attempts[0] == renew_at(old.certificate)
    lifetime = old.certificate.not_valid_after_utc - start
    assert abs(sleeps[0] - lifetime.total_seconds() * 2 / 3) < 1
    assert sleeps[1] == 60  # The retry after the failure.
    assert len(attempts) == 2


def test_watch_gives_up_once_the_certificate_expired(tmp_path, service):
    old = issue(service.authority, "alice", "n1")
    cert, key = write_client(old, tmp_path, "n1")
    end = old.certificate.not_valid_after_utc

    def renew(t):
        raise RenewalClientError("refused (test)")

    with pytest.raises(RenewalClientError, match="expired"):
        watch(
            RenewalTarget(cert=cert, key=key, server="http://unused"),
            renew=renew,
            sleep=lambda s: None,
            clock=lambda: end + timedelta(seconds=1),
        )


def test_the_deploy_hook_runs_after_a_renewal_with_the_new_files(tmp_path, service, capsys):
    old = issue(service.authority, "alice", "n1")
    cert, key = write_client(old, tmp_path, "n1")
    seen = tmp_path / "seen"
    hook = f'printf "%s %s %s" "$RENEWED_CERT" "$RENEWED_KEY" "$RENEWED_SERIAL" > {seen}'
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url]
        assert cli.main([*argv, "--deploy-hook", hook]) == 0
        new = x509.load_pem_x509_certificate(cert.read_bytes())
        assert seen.read_text() == f"{cert} {key} {new.serial_number:x}"
        # A failing hook: the files are renewed all the same, and the exit status says so.
        assert cli.main([*argv, "--deploy-hook", "exit 3"]) == 1
        assert "renewed, but --deploy-hook: exited with status 3" in capsys.readouterr().err
        newer = x509.load_pem_x509_certificate(cert.read_bytes())
        assert newer.serial_number != new.serial_number


def test_a_hook_that_fails_during_watch_is_logged_and_the_watch_goes_on(tmp_path, service, caplog):
    old = issue(service.authority, "alice", "n1")
    cert, key = write_client(old, tmp_path, "n1")
    target = RenewalTarget(cert=cert, key=key, server="http://unused")
    ran = []

    def hook(certificate):
        ran.append(certificate.serial_number)
        run_deploy_hook("exit 7", target, certificate)

    watch(
        target,
        renew=lambda t: old.certificate,
        sleep=lambda s: None,
        max_renewals=2,
        after_renewal=hook,
    )
    assert ran == [old.certificate.serial_number] * 2
    assert caplog.text.count("--deploy-hook: exited with status 7") == 2


def test_a_hook_that_hangs_is_stopped(tmp_path, service, monkeypatch):
    from nodecert.client import renew as renew_client

    old = issue(service.authority, "alice", "n1")
    cert, key = write_client(old, tmp_path, "n1")
    monkeypatch.setattr(renew_client, "_HOOK_TIMEOUT_S", 0.2)
    with pytest.raises(RenewalClientError, match="still running after 0 s; stopped"):
        run_deploy_hook("sleep 30", RenewalTarget(cert=cert, key=key, server="x"), old.certificate)
