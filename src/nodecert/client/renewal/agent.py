"""Renewing certificate files: when it is due, with what, and forever under ``--watch``.

A renewal makes a fresh key of the same type locally, sends only its CSR, and proves
possession of the current certificate with a short token signed by the current key
(:meth:`nodecert.client.Client.renew`). The new key never leaves the machine.

Both files are replaced together (:func:`~nodecert.client._files.write_together`): each
reader sees the old or the new file, never half of one, and a failure leaves the old pair.
A deploy hook (a shell command, like certbot's ``--deploy-hook``) then tells the consumer,
nginx say, to reload.

When to renew is one pure function, :func:`due_at`: by default in the last third of the
lifetime (at two thirds, like step and cert-manager), or ``renew_before`` the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.client._files import OutputFile, ensure_room, read_small, write_together
from nodecert.client.renewal._hook import run_deploy_hook
from nodecert.client.renewal._pair import complete_interrupted, exclusive, remove_leftovers
from nodecert.client.renewal._rotation import issuer_retiring
from nodecert.client.renewal._target import KeyMismatchError, RenewalClientError, RenewalTarget
from nodecert.core.errors import (
    AuthorizationError,
    ConflictError,
    InvalidIdentifierError,
    NodecertError,
)
from nodecert.core.identity import Identity, format_serial
from nodecert.core.keys import (
    PrivateKey,
)

__all__ = [
    "Backoff",
    "KeyMismatchError",
    "RenewalClientError",
    "RenewalOutcome",
    "RenewalTarget",
    "due_at",
    "is_permanent",
    "load_pair",
    "renew_files",
    "renew_if_due",
    "run_deploy_hook",
    "watch",
]

log = logging.getLogger("nodecert.renew")


def due_at(certificate: x509.Certificate, *, renew_before: timedelta | None = None) -> datetime:
    """When ``certificate`` becomes due for renewal.

    Args:
        certificate: The current certificate.
        renew_before: Renew this long before it expires; default: the last third of its
            lifetime. A value longer than the lifetime makes it due from the start.
    """
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if renew_before is None:
        return start + (end - start) * 2 / 3
    return max(start, end - renew_before)


def load_pair(target: RenewalTarget) -> tuple[x509.Certificate, PrivateKey]:
    """Read the certificate and its key (finishing a renewal that was interrupted).

    Waits while another renewer of the same files is at work (:func:`_turn`).

    Raises:
        RenewalClientError: a file is unreadable or not PEM.
        KeyMismatchError: the key belongs to another certificate, or is not RSA/EC.
    """
    target = _through_links(target)
    with _turn(target):
        return _read_pair(target)


def _through_links(target: RenewalTarget) -> RenewalTarget:
    """``target`` with symbolic links followed: the files the consumer reads get renewed,
    and the links stay links."""

    def real(path: Path) -> Path:
        return Path(os.path.realpath(path)) if path.is_symlink() else path

    return dataclasses.replace(target, cert=real(target.cert), key=real(target.key))


@contextlib.contextmanager
def _turn(target: RenewalTarget) -> Iterator[None]:
    """This process's turn with ``target``'s files: one renewer at a time."""
    directory = target.cert.parent
    try:
        with exclusive(directory):
            yield
    except OSError as exc:
        if exc.filename is None:
            raise
        raise RenewalClientError(f"{exc.filename}: {exc.strerror}") from None


def _read_pair(target: RenewalTarget) -> tuple[x509.Certificate, PrivateKey]:
    try:
        cert_pem, key_pem = read_small(target.cert), read_small(target.key)
    except OSError as exc:
        raise RenewalClientError(f"{exc.filename}: {exc.strerror}") from None
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise RenewalClientError(f"{target.cert}: not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise RenewalClientError(f"{target.key}: not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMismatchError(f"{target.key}: only RSA and EC keys are supported")
    if key.public_key() != certificate.public_key():
        completed = complete_interrupted(target.cert, key.public_key())
        if completed is None:
            raise KeyMismatchError(f"{target.key}: does not belong to {target.cert}")
        log.warning(
            "renew: completed an interrupted renewal: %s is serial %s",
            target.cert,
            format_serial(completed.serial_number),
        )
        certificate = completed
    try:
        Identity.from_certificate(certificate)
    except InvalidIdentifierError as exc:
        # Never renewable, so said before any network call, naming the file.
        raise RenewalClientError(f"{target.cert}: {exc.detail}") from None
    remove_leftovers(target.cert, target.key)
    return certificate, key


def renew_files(target: RenewalTarget, *, now: datetime | None = None) -> x509.Certificate:
    """Renew the certificate in ``target.cert`` now and replace both files.

    Raises:
        RenewalClientError: unreadable files, or the new files could not be written (the
            old pair is left in place).
        KeyMismatchError: the key does not belong to the certificate.
        NodecertError: the service refused or could not be reached (see :class:`Client`).
    """
    target = _through_links(target)
    with _turn(target):
        certificate, key = _read_pair(target)
        return _renew_pair(target, certificate, key, now=now)


def _renew_pair(
    target: RenewalTarget, certificate: x509.Certificate, key: PrivateKey, *, now: datetime | None
) -> x509.Certificate:
    for directory in dict.fromkeys((target.key.parent, target.cert.parent)):
        try:
            ensure_room(directory)
        except OSError as exc:
            raise RenewalClientError(
                f"{exc.filename}: {exc.strerror}; nothing was renewed, the old files are unchanged"
            ) from None
    issued = target.client.renew(certificate, key, audience=target.audience, now=now)
    renewed = x509.load_pem_x509_certificate(issued.certificate.encode())
    if issued.private_key is None:  # Client.renew always makes one; a fake might not.
        raise RenewalClientError("renew: no new private key came back; files unchanged")
    try:
        write_together(_outputs(target, issued.private_key, issued.certificate))
    except OSError as exc:
        raise RenewalClientError(
            f"renewed as serial {issued.serial}, but {exc.filename}: {exc.strerror};"
            " the old files are unchanged"
        ) from None
    return renewed


def _outputs(target: RenewalTarget, key_pem: str, cert_pem: str) -> list[OutputFile]:
    if _same_file(target.cert, target.key):
        # One file with both (HAProxy's layout): written once, key first, private.
        return [OutputFile(target.key, (key_pem + cert_pem).encode(), 0o600)]
    # The files keep their owner and group; a key shared with a group (root:nginx 0640)
    # stays so, any other key is 0600 (a world-readable one included).
    shared = _mode_of(target.key) & 0o044 == 0o040
    key_mode = 0o640 if shared else 0o600
    return [
        OutputFile(target.key, key_pem.encode(), key_mode, _owner_of(target.key)),
        OutputFile(target.cert, cert_pem.encode(), _mode_of(target.cert), _owner_of(target.cert)),
    ]


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one == other or os.path.samefile(one, other)
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class RenewalOutcome:
    """What :func:`renew_if_due` did: ``renewed`` is the new certificate, or None when the
    current one (``current``) is not due until ``due``."""

    current: x509.Certificate
    due: datetime
    renewed: x509.Certificate | None


def renew_if_due(
    target: RenewalTarget,
    *,
    now: datetime,
    renew_before: timedelta | None = None,
    force: bool = False,
    before_renewal: Callable[[], None] | None = None,
) -> RenewalOutcome:
    """Renew ``target`` if it is due at ``now`` (or ``force``); otherwise call nothing.

    What a timer runs (``nodecert renew``): most runs find the certificate not due and
    return without touching the files, after one ``GET /v1/ca/issuers`` (a certificate
    whose issuing CA retires is due at once). ``before_renewal`` runs once it is
    due, before the service is called (the CLI checks that the files can be written).

    Raises:
        The errors of :func:`load_pair` and :func:`renew_files`.
    """
    target = _through_links(target)
    with _turn(target):
        certificate, key = _read_pair(target)
        due = due_at(certificate, renew_before=renew_before)
        if not force and now < due and not issuer_retiring(target.client, certificate):
            return RenewalOutcome(certificate, due, None)
        if before_renewal is not None:
            before_renewal()
        return RenewalOutcome(certificate, due, _renew_pair(target, certificate, key, now=now))


def _owner_of(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_uid, status.st_gid


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o644


def is_permanent(error: BaseException) -> bool:
    """Whether a retry cannot fix ``error``: a revoked, foreign or already renewed
    certificate (403, 409) or a key that does not match."""
    return isinstance(error, KeyMismatchError | AuthorizationError | ConflictError)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays after transient failures: ``first``, doubling, at most ``cap``."""

    first: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(hours=1)

    def delay(self, failures: int, retry_after: int | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based)."""
        seconds = self.first.total_seconds() * float(1 << min(max(failures - 1, 0), 30))
        seconds = min(seconds, self.cap.total_seconds())
        return max(seconds, float(retry_after or 0))


def watch(
    target: RenewalTarget,
    *,
    sleep: Callable[[float], None],
    renew: Callable[[RenewalTarget], x509.Certificate] = renew_files,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    jitter: Callable[[], float] = random.random,
    renew_before: timedelta | None = None,
    backoff: Backoff = Backoff(),
    recheck: timedelta = timedelta(hours=1),
    max_renewals: int | None = None,
    after_renewal: Callable[[x509.Certificate], None] | None = None,
) -> None:
    """Keep ``target`` renewed, forever (or ``max_renewals`` times).

    Each round logs the schedule: the renewal time is :func:`due_at` minus a random
    jitter of up to a twentieth of the lifetime (so a fleet issued at once does not renew
    at once), and never within the first tenth of the lifetime; the files are read again
    at least every ``recheck``, so a certificate replaced meanwhile is followed. Transient failures
    (service down or busy, unreadable files) are logged and retried with :class:`Backoff`;
    ``after_renewal`` (the deploy hook) failures are logged and the watch goes on, the new
    files being in place either way.

    Raises:
        NodecertError: a failure no retry can fix (:func:`is_permanent`), or any failure
            once the certificate has expired.
    """
    renewals = failures = 0
    planned: tuple[int, datetime] | None = None
    mismatched: datetime | None = None
    while max_renewals is None or renewals < max_renewals:
        try:
            certificate, _ = load_pair(target)
            mismatched = None
        except RenewalClientError as exc:
            if isinstance(exc, KeyMismatchError):
                # Files replaced by hand, one after the other, do not match for a moment;
                # a mismatch that lasts is for good.
                mismatched = mismatched or clock()
                if clock() - mismatched >= _MISMATCH_PATIENCE:
                    log.error("renew: %s; giving up: a retry cannot fix this", exc.detail)
                    raise
            failures += 1
            pause = backoff.delay(failures)
            log.warning("renew: %s; retry %d in %.0f s", exc.detail, failures, pause)
            sleep(pause)
            continue
        end = certificate.not_valid_after_utc
        if planned is None or planned[0] != certificate.serial_number:
            when = _renewal_time(certificate, renew_before, jitter())
            planned = (certificate.serial_number, when)
            log.info(
                "renew: %s (serial %s, valid until %s) renews at %s",
                target.cert,
                format_serial(certificate.serial_number),
                _time(end),
                _time(when),
            )
        wait = (planned[1] - clock()).total_seconds()
        if wait > 0 and issuer_retiring(target.client, certificate):
            wait = 0  # A CA rotation: renew onto the new issuing CA now.
        if wait > 0:
            # In naps of at most ``recheck``: after a suspend, a clock step or files
            # replaced by hand, the next nap starts from the truth.
            sleep(min(wait, recheck.total_seconds()))
            continue
        try:
            renewed = renew(target)
        except NodecertError as exc:
            if isinstance(exc, ConflictError) and _replaced(target, planned[0]):
                log.info("renew: %s was renewed meanwhile by another renewer", target.cert)
                continue
            if is_permanent(exc):
                log.error("renew: %s; giving up: a retry cannot fix this", exc.detail)
                raise
            if clock() >= end:
                log.error("renew: %s; the certificate has expired", exc.detail)
                raise RenewalClientError(f"{exc.detail}; the certificate has expired") from exc
            failures += 1
            pause = min(backoff.delay(failures, exc.retry_after), _until(end, clock()))
            log.warning("renew: %s; retry %d in %.0f s", exc.detail, failures, pause)
            sleep(pause)
            continue
        renewals, failures = renewals + 1, 0
        log.info(
            "renew: renewed %s: serial %s, valid until %s",
            target.cert,
            format_serial(renewed.serial_number),
            _time(renewed.not_valid_after_utc),
        )
        if after_renewal is not None:
            try:
                after_renewal(renewed)
            except RenewalClientError as exc:
                log.warning("renew: %s", exc.detail)


_MISMATCH_PATIENCE = timedelta(minutes=5)


def _replaced(target: RenewalTarget, serial: int) -> bool:
    """Whether the files now hold another certificate than ``serial`` (a valid pair)."""
    try:
        certificate, _ = load_pair(target)
    except RenewalClientError:
        return False
    return certificate.serial_number != serial


def _renewal_time(
    certificate: x509.Certificate, renew_before: timedelta | None, jitter: float
) -> datetime:
    start = certificate.not_valid_before_utc
    lifetime = certificate.not_valid_after_utc - start
    when = due_at(certificate, renew_before=renew_before) - lifetime / 20 * jitter
    # Never within the first tenth of a lifetime: a --renew-before close to the lifetime
    # must not turn the watch into a loop that renews without pause.
    return max(when, start + lifetime / 10)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _until(end: datetime, now: datetime) -> float:
    # Retry once more right at expiry rather than sleeping past it.
    return max((end - now).total_seconds(), 1.0)
