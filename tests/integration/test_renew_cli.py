"""``nodecert renew`` against a live service over real HTTP, and ``--watch`` timing."""

import os
import stat
from datetime import timedelta

import pytest
from cryptography import x509

from nodecert.adapters import cli
from nodecert.adapters.http import create_app
from nodecert.adapters.renew_client import RenewalClientError, RenewalTarget, renew_at, watch
from nodecert.bootstrap import build_service
from nodecert.config import Settings
from nodecert.ports import RevocationReason
from tests.nodeside import ADMIN, LiveServer, issue, write_client


@pytest.fixture
def service(tmp_path):
    return build_service(Settings(home=tmp_path / "home"))


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
