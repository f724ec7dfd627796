"""The files of a local CA home: creating a two-tier CA, reading its chain, the lock.

See :mod:`nodecert.backends.local.ca` for the layout of ``<home>/ca/``. The names of the
``retired/`` entries (one per issuing CA a rotation replaced, named by its key id) are
defined here, with the one scan of them (:func:`retired_entries`): a rotation writes them
(:mod:`nodecert.backends.local.rotation_files`), the CA, its root CRL and the node-side
check read them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nodecert.backends.local.hierarchy import ca_name, key_bytes, make_intermediate, make_root
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import KeyType, PrivateKey, generate_private_key, key_id
from nodecert.core.values import IssuerSet
from nodecert.support.files import write_atomic

__all__ = [
    "RETIRED",
    "RETIRED_AT",
    "RETIRED_NOW",
    "ROTATION",
    "HomeCA",
    "HomeIssuers",
    "create_two_tier",
    "issuing_name",
    "key_id",
    "locked",
    "pem",
    "read_certificate",
    "read_chain",
    "read_home",
    "retired_entries",
    "rotation_file",
    "rotation_stamp",
    "stamp_of",
    "unchanged",
    "write_new_private",
]

# The counter a completed rotation advances (see nodecert.backends.local.rotation_files).
ROTATION = "rotation"
# The issuing CAs a rotation replaced: RETIRED/<key id>/, holding its ca.crt, its ca.key or
# ca.keyref, its crlnumber, its root.crt (and root.key) when the root changed, and:
RETIRED = "retired"
# The mark of an issuing CA retired at once (ca rotate --retire-now): its certificates are
# refused, and the root's CRL revokes it.
RETIRED_NOW = "retired-now"
# When it was retired (ISO 8601), for prune and the root's CRL.
RETIRED_AT = "retired-at"


def create_two_tier(
    directory: Path,
    *,
    organization: str,
    key_type: KeyType,
    passphrase: str | None,
    now: datetime,
    root_key_out: Path | None = None,
    issuing_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None,
) -> None:
    """Write a new two-tier CA into ``directory`` (see the module docstring).

    ``root_key_out`` writes the root key there instead of ``directory/root.key``, for the
    operator to take offline; it must not exist yet. ``issuing_key`` is the public half of
    an issuing key held elsewhere (AWS KMS): no ``ca.key`` is written. ``ca.crt`` is
    written last: a home with it is complete. The caller holds the directory lock.

    Raises:
        ConfigurationError: ``root_key_out`` exists or cannot be written.
    """
    root_key = generate_private_key(key_type)
    root = make_root(root_key, organization, now)
    key: PrivateKey | None = None
    if issuing_key is None:
        key = generate_private_key(key_type)
        public_key = key.public_key()
    else:
        public_key = issuing_key
    certificate = make_intermediate(
        public_key, issuing_name(organization, now), root_key=root_key, root=root, now=now
    )
    sealed = key_bytes(root_key, passphrase)
    if root_key_out is None:
        write_atomic(directory / "root.key", sealed, mode=0o600)
    else:
        write_new_private(root_key_out, sealed)
    # Public, but under NODECERT_HOME every file is private (0600).
    write_atomic(directory / "root.crt", pem(root), mode=0o600)
    if key is not None:
        write_atomic(directory / "ca.key", key_bytes(key, passphrase), mode=0o600)
    write_atomic(directory / "ca.crt", pem(certificate), mode=0o600)


def read_chain(directory: Path, public_key: object = None) -> tuple[x509.Certificate, ...]:
    """The CA chain kept in ``directory`` (issuing CA first), without reading any key.

    ``public_key``, when given, must be the issuing certificate's (that of ``ca.key``).

    Raises:
        ConfigurationError: no CA there, unreadable files, an issuing certificate that
            does not match ``public_key``, or one the root did not sign.
    """
    certificate = read_certificate(directory / "ca.crt")
    if public_key is not None and certificate.public_key() != public_key:
        raise ConfigurationError(
            f"local CA: {directory / 'ca.crt'} does not match {directory / 'ca.key'}"
        )
    root_path = directory / "root.crt"
    if not root_path.exists():
        return (certificate,)  # A one-tier CA of an earlier version.
    root = read_certificate(root_path)
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigurationError(
            f"local CA: {directory / 'ca.crt'} is not signed by {root_path}"
        ) from exc
    return (certificate, root)


@dataclass(frozen=True, slots=True)
class HomeCA:
    """What a home's CA files say, without any key.

    Attributes:
        chain: The issuing CA first, up to and including its root (what certificates
            carry; one certificate for a one-tier CA of an earlier version).
        retiring: Earlier issuing CAs (and their roots, when the root changed) whose
            certificates are still accepted.
        retired: Earlier issuing CAs retired at once (``ca rotate --retire-now``).
        stamp: Identifies the state of the files (see :func:`rotation_stamp`).
    """

    chain: tuple[x509.Certificate, ...]
    retiring: tuple[x509.Certificate, ...] = ()
    retired: tuple[x509.Certificate, ...] = ()
    stamp: object = None

    def published(self) -> tuple[x509.Certificate, ...]:
        """``GET /v1/ca``: the issuing CA, the retiring ones, their roots, the root last."""
        issuing, *rest = self.chain
        extra = [c for c in self.retiring if c not in self.chain]
        ordered = [issuing, *(c for c in extra if not _self_signed(c))]
        ordered += [c for c in extra if _self_signed(c)]
        return (*ordered, *(c for c in rest if c not in ordered))

    def issuer_set(self) -> IssuerSet:
        """The :class:`IssuerSet` of these files."""
        published = self.published()
        return IssuerSet(
            roots=tuple(c for c in published if _self_signed(c)),
            intermediates=tuple(c for c in published if not _self_signed(c)),
            retired=self.retired,
        )


def read_home(directory: Path, public_key: object = None) -> HomeCA:
    """The CA files of ``directory`` (see :class:`HomeCA`); no key is read.

    Raises:
        ConfigurationError: see :func:`read_chain`.
    """
    stamp = rotation_stamp(directory)
    chain = read_chain(directory, public_key)
    current = key_id(chain[0])
    retiring: list[x509.Certificate] = []
    retired: list[x509.Certificate] = []
    for entry in retired_entries(directory, current):
        found = [read_certificate(entry / "ca.crt")]
        if (entry / "root.crt").is_file():
            found.append(read_certificate(entry / "root.crt"))
        (retired if (entry / RETIRED_NOW).exists() else retiring).extend(found)
    return HomeCA(chain, tuple(retiring), tuple(retired), stamp)


def retired_entries(directory: Path, in_use: str) -> list[Path]:
    """The ``retired/`` entries of ``directory`` that hold an issuing CA, by name.

    ``in_use`` is the key id of the issuing CA in use: an entry of that name is what a
    rotation killed early left, and is skipped; so is an entry without ``ca.crt``.
    """
    base = directory / RETIRED
    return [
        entry
        for entry in (sorted(base.iterdir()) if base.is_dir() else ())
        if entry.name != in_use and (entry / "ca.crt").is_file()
    ]


class HomeIssuers:
    """The ``IssuerSource`` of a home's CA files alone (no key): for the node-side check.

    The files are read again after a rotation (one system call per call finds out:
    :func:`unchanged`), so an authorizer beside the service follows ``nodecert ca rotate``
    on its next decision.

    Raises:
        ConfigurationError: at construction, see :func:`read_home`.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._rotation_file = rotation_file(directory)
        self._lock = threading.Lock()
        home = read_home(directory)
        self._loaded = (home.stamp, home.issuer_set())

    def issuer_set(self) -> IssuerSet:
        """The current :class:`IssuerSet` (the same object until the next rotation)."""
        loaded = self._loaded
        if unchanged(self._rotation_file, loaded[0]):
            return loaded[1]
        with self._lock:
            if stamp_of(self._rotation_file) != self._loaded[0]:
                try:
                    home = read_home(self._directory)
                except ConfigurationError:
                    return self._loaded[1]  # Files being replaced: the next call retries.
                self._loaded = (home.stamp, home.issuer_set())
            return self._loaded[1]


def rotation_stamp(directory: Path) -> object:
    """What changes whenever a rotation completes: the ``rotation`` counter file's state."""
    return stamp_of(rotation_file(directory))


def rotation_file(directory: Path) -> str:
    """The ``rotation`` counter file of ``directory``, for :func:`stamp_of`."""
    return os.path.join(directory, ROTATION)


def stamp_of(path: str) -> object:
    """:func:`rotation_stamp` of the file :func:`rotation_file` named, without joining the
    path again: one ``stat``, cheap enough to check on every request."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def unchanged(path: str, stamp: object) -> bool:
    """Whether the file :func:`rotation_file` named still has ``stamp`` (:func:`stamp_of`).

    One system call, and no exception while the file is still missing (a home that never
    rotated): every request asks.
    """
    if stamp is None:
        return not os.access(path, os.F_OK, effective_ids=_EFFECTIVE)
    return stamp_of(path) == stamp


# access() asks as the process's effective user, as stat() does, where the system can.
_EFFECTIVE = os.access in os.supports_effective_ids


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def write_new_private(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) with ``data``; refuse to replace an existing file.

    Raises:
        ConfigurationError: it exists, or cannot be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"{path}: exists already; not replacing it") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot create it: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigurationError(f"{path}: cannot write it: {exc.strerror}") from exc


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``<directory>/.lock`` that serializes creating a CA."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # Closing releases the lock.


def issuing_name(organization: str, now: datetime) -> x509.Name:
    """The name of a new issuing intermediate: the organization and the time it was made."""
    # Each intermediate gets a name of its own, so that two of them (during a rotation)
    # are told apart by every tool, not by their key identifiers only.
    return ca_name(organization, f"issuing CA {now:%Y-%m-%d %H:%M:%S}")


def pem(certificate: x509.Certificate) -> bytes:
    """PEM bytes of ``certificate``."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def read_certificate(path: Path) -> x509.Certificate:
    """The PEM certificate in ``path``.

    Raises:
        ConfigurationError: unreadable, or not a PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"local CA: cannot read {path}") from exc
