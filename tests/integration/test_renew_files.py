"""Renewed files under stress: failed renames, a full disk, a kill mid-write, two renewers."""

import errno
import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from nodecert.cli import commands as cli
from nodecert.client import Client
from nodecert.client._files import OutputFile, write_together
from nodecert.client.renewal.agent import (
    RenewalClientError,
    RenewalTarget,
    load_pair,
    renew_files,
    renew_if_due,
)
from nodecert.http.app import create_app
from tests.fakes import race
from tests.kit import LiveServer, issue, write_client


def _serial(path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _strays(directory) -> list[str]:
    # The time of the next revocation check is kept on purpose; anything else is a stray.
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.startswith(".") and not p.name.endswith(".revocation-check")
    )


def test_a_failed_rename_puts_the_files_already_replaced_back(tmp_path):
    (tmp_path / "n1.key").write_bytes(b"OLD KEY")
    blocked = tmp_path / "n1.crt"  # A non-empty directory: renaming a file onto it fails.
    blocked.mkdir()
    (blocked / "x").write_text("x")
    files = [OutputFile(tmp_path / "n1.key", b"NEW KEY", 0o600), OutputFile(blocked, b"NEW")]
    with pytest.raises(IsADirectoryError) as failed:
        write_together(files)
    assert failed.value.filename == str(blocked)
    # The key renamed first is the old one again: the pair on disk stays a pair.
    assert (tmp_path / "n1.key").read_bytes() == b"OLD KEY"
    assert _strays(tmp_path) == []


def test_a_failed_rename_of_a_new_file_removes_it(tmp_path):
    blocked = tmp_path / "n1.crt"
    blocked.mkdir()
    (blocked / "x").write_text("x")
    files = [OutputFile(tmp_path / "n1.key", b"NEW KEY", 0o600), OutputFile(blocked, b"NEW")]
    with pytest.raises(IsADirectoryError):
        write_together(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n1.crt"]


def test_a_full_disk_during_renewal_keeps_the_old_pair(tmp_path, service, capsys, monkeypatch):
    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    before = cert.read_bytes(), key.read_bytes()
    real_fsync = os.fsync

    def full(fd: int) -> None:
        # The new files' data reaches the disk at fsync: that is where ENOSPC shows.
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with LiveServer(create_app(service)) as server:
        monkeypatch.setattr(os, "fsync", full)
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url]
        assert cli.main([*argv, "--force"]) == 1
        err = capsys.readouterr().err
        # The library checks too (for --watch and other callers of renew_files).
        target = RenewalTarget(cert=cert, key=key, client=Client(server.url, timeout=30))
        with pytest.raises(RenewalClientError, match="nothing was renewed"):
            renew_files(target)
    assert err.count("\n") == 1 and "No space left on device" in err
    assert "cannot write in" in err and "PRIVATE KEY" not in err
    assert (cert.read_bytes(), key.read_bytes()) == before
    assert _strays(tmp_path) == []
    # The room was checked before the service was asked: the certificate on disk is not
    # superseded, so it renews once the disk has room again (a 409 forever otherwise).
    serial = format(_serial(cert), "x")
    assert service.authority.ledger.get(serial).status.value == "active"
    monkeypatch.setattr(os, "fsync", real_fsync)
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url]
        assert cli.main([*argv, "--force"]) == 0, capsys.readouterr().err


def test_an_interrupted_renewal_is_completed_by_the_next_run(tmp_path, service, capsys):
    # A renewal killed between its two renames leaves the new key beside the old
    # certificate, and the new certificate in its temporary. The next run finishes it
    # instead of calling the pair a mismatch forever.
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    with LiveServer(create_app(service)) as server:
        target = RenewalTarget(cert=cert, key=key, client=Client(server.url, timeout=30))
        renewed = renew_files(target)
    (tmp_path / ".n1.crt.k1ll3d.tmp").write_bytes(cert.read_bytes())
    cert.write_text(old.pem)
    argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", "http://127.0.0.1:9"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert "not due" in out and "completed an interrupted renewal" in err
    assert _serial(cert) == renewed.serial_number
    load_pair(RenewalTarget(cert=cert, key=key, client=target.client))
    assert _strays(tmp_path) == []


def test_a_stray_certificate_that_fits_no_key_is_not_taken(tmp_path, service, capsys):
    first = issue(service.authority, "alice", "n1", admin=service.administration)
    second = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(first, tmp_path, "n1")
    key.write_bytes(second.key_pem)
    (tmp_path / ".n1.crt.other.tmp").write_text(first.pem)
    argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", "http://127.0.0.1:9"]
    assert cli.main(argv) == 1
    assert "does not belong to" in capsys.readouterr().err
    assert cert.read_text() == first.pem


def test_two_renewers_racing_on_the_same_files_both_succeed(tmp_path, service):
    # Say the timer and an operator's `nodecert renew` at once: one after the other, each
    # renews what is on disk when its turn comes; nobody renews a superseded certificate
    # (409) and the files end as a matching pair.
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    with LiveServer(create_app(service)) as server:
        target = RenewalTarget(cert=cert, key=key, client=Client(server.url, timeout=30))
        outcomes = race(
            2,
            lambda _i: renew_if_due(target, now=datetime.now(UTC), renew_before=timedelta(days=30)),
        )
    assert all(o.renewed is not None for o in outcomes)
    current, _ = load_pair(target)
    assert current.serial_number in {o.renewed.serial_number for o in outcomes}
    first = {o.current.serial_number for o in outcomes}
    assert len(first) == 2 and old.certificate.serial_number in first
    assert _strays(tmp_path) == []


def test_watch_goes_on_when_another_renewer_got_there_first(tmp_path, service, caplog):
    # A renewer that takes no turns (another machine on a shared directory) renews first:
    # our renewal is refused with 409, but the files hold a newer certificate, so the watch
    # follows it instead of giving up (systemd would not restart it).
    from nodecert.client.renewal.agent import watch
    from nodecert.core.errors import AlreadyRenewedError

    old = issue(service.authority, "alice", "n1", admin=service.administration)
    newer = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    now = [old.certificate.not_valid_before_utc]
    calls = []

    def renew(target):
        calls.append(now[0])
        if len(calls) == 1:
            write_client(newer, tmp_path, "n1")
            raise AlreadyRenewedError("serial: already renewed (test)")
        return newer.certificate

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    caplog.set_level("INFO", logger="nodecert")
    watch(
        RenewalTarget(cert=cert, key=key, client=Client("http://127.0.0.1:9")),
        renew=renew,
        sleep=sleep,
        clock=lambda: now[0],
        jitter=lambda: 0,
        max_renewals=1,
    )
    assert len(calls) == 2
    assert "renewed meanwhile" in caplog.text


def test_renewal_writes_through_symbolic_links(tmp_path, service, capsys):
    # /etc/nodecert/node.crt -> /etc/nginx/nodecert/n1-server.crt: the consumer reads the
    # link's target, so that is what a renewal must replace; the links stay links.
    real = tmp_path / "nginx"
    real.mkdir()
    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), real, "n1"
    )
    links = tmp_path / "etc"
    links.mkdir()
    (links / "node.crt").symlink_to(cert)
    (links / "node.key").symlink_to(key)
    before = _serial(cert)
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(links / "node.crt"), "--key", str(links / "node.key")]
        assert cli.main([*argv, "--server", server.url, "--force"]) == 0, capsys.readouterr()
    assert (links / "node.crt").is_symlink() and (links / "node.key").is_symlink()
    assert _serial(cert) != before
    load_pair(RenewalTarget(cert=cert, key=key, client=Client("http://127.0.0.1:9")))
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert _strays(real) == [] and _strays(links) == []


def test_keys_left_in_temporaries_by_a_killed_renewal_are_removed(tmp_path, service, capsys):
    # Killed before its renames, a renewal leaves its new key in a temporary (0600). The
    # next run removes such leftovers once they are old enough not to be another
    # writer's files in progress.
    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    stale = [tmp_path / ".n1.key.dead01.tmp", tmp_path / ".n1.crt.dead02.tmp"]
    stale.append(tmp_path / ".n1.key.dead03.old")
    fresh = tmp_path / ".n1.key.busy04.tmp"
    for path in [*stale, fresh]:
        path.write_text("leftover of a killed renewal\n")
    hour_ago = datetime.now(UTC).timestamp() - 3600
    for path in stale:
        os.utime(path, (hour_ago, hour_ago))
    argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", "http://127.0.0.1:9"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert _strays(tmp_path) == [fresh.name]


def test_a_combined_key_and_certificate_file_is_renewed_as_one(tmp_path, service, capsys):
    # `--cert both.pem --key both.pem` (HAProxy's layout): writing the key and then the
    # certificate to the same file used to leave only the certificate, its key lost.
    old = issue(service.authority, "alice", "n1", admin=service.administration)
    both = tmp_path / "both.pem"
    both.write_bytes(old.key_pem + old.pem.encode())
    os.chmod(both, 0o600)
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(both), "--key", str(both), "--server", server.url]
        assert cli.main([*argv, "--force"]) == 0, capsys.readouterr().err
    target = RenewalTarget(cert=both, key=both, client=Client("http://127.0.0.1:9"))
    certificate, _ = load_pair(target)
    assert certificate.serial_number != old.certificate.serial_number
    assert oct(both.stat().st_mode & 0o777) == "0o600"
    assert _strays(tmp_path) == []


def test_a_filesystem_without_locks_still_renews(tmp_path, service, capsys, monkeypatch):
    # Some NFS mounts answer flock with ENOLCK: renewal goes on without taking turns.
    # (Only the renewer's flock fails: the in-process service's SQLite store locks too.)
    import fcntl
    import types

    from nodecert.client.renewal import _pair

    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    with LiveServer(create_app(service)) as server:
        fake = types.SimpleNamespace(flock=no_locks, LOCK_EX=fcntl.LOCK_EX)
        monkeypatch.setattr(_pair, "fcntl", fake)
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url]
        assert cli.main([*argv, "--force"]) == 0, capsys.readouterr().err


def test_watch_waits_for_a_pair_replaced_by_hand_one_file_at_a_time(tmp_path, service, caplog):
    # `cp new.crt node.crt; cp new.key node.key` while the watch reads: for a moment the
    # key does not match. The watch retries instead of exiting for good (systemd's
    # Restart=on-abnormal would not start it again); a mismatch that lasts still stops it.
    from nodecert.client.renewal.agent import KeyMismatchError, watch

    old = issue(service.authority, "alice", "n1", admin=service.administration)
    newer = issue(service.authority, "alice", "n1", admin=service.administration)
    cert, key = write_client(old, tmp_path, "n1")
    cert.write_text(newer.pem)  # Half replaced.
    now = [datetime.now(UTC)]
    naps = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += timedelta(seconds=seconds)
        if len(naps) == 1:
            key.write_bytes(newer.key_pem)  # The other half arrives.

    caplog.set_level("INFO", logger="nodecert")
    watch(
        RenewalTarget(cert=cert, key=key, client=Client("http://127.0.0.1:9")),
        renew=lambda target: newer.certificate,
        sleep=sleep,
        clock=lambda: now[0],
        jitter=lambda: 0,
        max_renewals=1,
    )
    assert naps[0] == 10 and "does not belong" in caplog.text

    key.write_bytes(old.key_pem)  # For good, this time.
    naps.clear()
    with pytest.raises(KeyMismatchError):
        watch(
            RenewalTarget(cert=cert, key=key, client=Client("http://127.0.0.1:9")),
            renew=lambda target: newer.certificate,
            sleep=lambda s: (naps.append(s), now.__setitem__(0, now[0] + timedelta(seconds=s))),
            clock=lambda: now[0],
            jitter=lambda: 0,
        )
    assert 1 < len(naps) < 10


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_renewal_keeps_the_owner_and_group_access_of_the_files(tmp_path, service, capsys):
    # A key shared with a consumer's group (root:nginx 0640) must stay readable to it
    # after a renewal run as root (a world-readable key becomes 0600: test_renew_cli).
    cert, key = write_client(
        issue(service.authority, "alice", "n1", admin=service.administration), tmp_path, "n1"
    )
    os.chown(key, 0, 65534)
    os.chmod(key, 0o640)
    os.chown(cert, 65534, 65534)
    os.chmod(cert, 0o640)
    with LiveServer(create_app(service)) as server:
        argv = ["renew", "--cert", str(cert), "--key", str(key), "--server", server.url]
        assert cli.main([*argv, "--force"]) == 0, capsys.readouterr().err
    k, c = key.stat(), cert.stat()
    assert (k.st_uid, k.st_gid, oct(k.st_mode & 0o777)) == (0, 65534, "0o640")
    assert (c.st_uid, c.st_gid, oct(c.st_mode & 0o777)) == (65534, 65534, "0o640")
