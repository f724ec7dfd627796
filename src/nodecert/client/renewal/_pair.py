"""A certificate file and its key file as one thing: one renewer at a time, no half pairs.

Two renewers of the same files (a timer and an operator, say) take turns: each holds an
exclusive ``flock`` on the certificate's directory from reading the pair to writing its
successor, so the second one reads what the first wrote. A renewal killed between its
two renames (:func:`nodecert.client._files.write_together` renames the key first) leaves
the new key beside the old certificate and the new certificate in its temporary;
:func:`complete_interrupted` finds that temporary and finishes the rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = ["complete_interrupted", "exclusive", "remove_leftovers"]


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (waiting for another holder to finish).

    Raises:
        OSError: the directory cannot be opened.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            # A file system without locks (some NFS mounts): renew without taking turns
            # rather than not at all.
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)  # Closing the last descriptor releases the lock.


def complete_interrupted(cert: Path, public_key: PublicKeyTypes) -> x509.Certificate | None:
    """Finish a renewal interrupted between its renames, under :func:`exclusive`.

    Looks for a temporary of ``cert`` (``.<name>.*.tmp``) holding a certificate for
    ``public_key`` (the key now on disk) and renames it into place.

    Returns:
        The certificate now in ``cert``, or None when no temporary fits the key.
    """
    for candidate in sorted(cert.parent.glob(f".{cert.name}.*.tmp")):
        try:
            certificate = x509.load_pem_x509_certificate(candidate.read_bytes())
        except (OSError, ValueError):
            continue
        if certificate.public_key() == public_key:
            os.replace(candidate, cert)
            return certificate
    return None


LEFTOVER_AGE_S = 600.0
"""How old a temporary must be before it counts as left over by a killed writer."""


def remove_leftovers(*paths: Path) -> None:
    """Remove the temporaries of ``paths`` (``.<name>.*.tmp``, ``.<name>.*.old``) that a
    killed renewal left, under :func:`exclusive`.

    A new key in such a file would otherwise stay on disk for good. Only files older than
    ten minutes go: a younger one may be the work in progress of a writer that takes no
    turns (``nodecert request --force`` into the same directory).
    """
    cutoff = time.time() - LEFTOVER_AGE_S
    for path in paths:
        for pattern in (f".{path.name}.*.tmp", f".{path.name}.*.old"):
            for leftover in path.parent.glob(pattern):
                with contextlib.suppress(OSError):
                    if leftover.lstat().st_mtime < cutoff:
                        leftover.unlink()
