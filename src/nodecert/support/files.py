"""Files nodecert owns: atomic writes, private files, and a private home directory.

Everything under ``NODECERT_HOME`` is private: the CA key, the dev issuer's key, and the
ledger (which says who owns which node). Files are created 0600 and the home is kept at
0700, whatever the process umask says.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from nodecert.core.errors import ConfigurationError

__all__ = ["CounterFile", "create_private", "secure_home", "write_atomic"]

_PRIVATE_FILE = 0o600
_PRIVATE_DIRECTORY = 0o700


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half.

    The temporary file is created with ``mode`` (0600 for private keys), so key material
    is never readable by others, not even for a moment.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing; tighten it to 0600 if not.

    SQLite creates its ``-wal`` and ``-shm`` files with the permissions of the database
    file, so creating the database this way first makes all three private.

    Raises:
        ConfigurationError: the file is group- or world-accessible and cannot be tightened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _PRIVATE_FILE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            try:
                os.fchmod(fd, mode & ~0o077)
            except OSError as exc:
                raise ConfigurationError(
                    f"{path}: mode {mode:04o} lets others read it, and it cannot be"
                    f" tightened: {exc.strerror or exc}; run chmod 600 on it as its owner"
                ) from exc
    finally:
        os.close(fd)


def secure_home(home: Path) -> None:
    """Create ``home`` with mode 0700, or tighten an existing one to 0700.

    Files and directories already in it that others may read (left by an older version,
    or by a copy under another umask) are tightened to 0600 and 0700.

    Raises:
        ConfigurationError: ``home`` is not a directory, or it is group- or
            world-accessible and cannot be tightened (the process does not own it).
    """
    try:
        home.mkdir(mode=_PRIVATE_DIRECTORY, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(
            f"NODECERT_HOME: cannot create {home}: {exc.strerror or exc}"
        ) from exc
    info = home.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"NODECERT_HOME: {home} is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        try:
            os.chmod(home, _PRIVATE_DIRECTORY)
        except OSError as exc:
            raise ConfigurationError(
                f"NODECERT_HOME: {home} has mode {mode:04o}, so other users can read the"
                f" ledger and keys in it, and it cannot be tightened to 0700:"
                f" {exc.strerror or exc}. Run chmod 700 {home} as its owner, or point"
                " NODECERT_HOME at a directory this user owns."
            ) from exc
    for path in home.rglob("*"):
        _tighten(path)


def _tighten(path: Path) -> None:
    info = path.lstat()
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or not mode & 0o077:
        return
    private = _PRIVATE_DIRECTORY if stat.S_ISDIR(info.st_mode) else mode & ~0o077
    try:
        os.chmod(path, private)
    except OSError as exc:
        raise ConfigurationError(
            f"NODECERT_HOME: {path} has mode {mode:04o} and cannot be tightened to"
            f" {private:04o}: {exc.strerror or exc}; run chmod go-rwx on it as its owner"
        ) from exc


class CounterFile:
    """A non-negative integer in a private file, shared by every process that opens it.

    :meth:`advance` holds an exclusive ``flock`` while it reads and rewrites the value, so
    two processes never hand out the same number.

    Args:
        path: The file (created 0600 on first use).
        durable: Whether each advance is ``fsync``-ed before it returns.
    """

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.durable = durable

    def value(self) -> int:
        """The current value (0 when the file does not exist yet)."""
        try:
            return _parse_counter(self.path.read_bytes())
        except FileNotFoundError:
            return 0

    def advance(self, *, at_least: int = 0) -> int:
        """Store and return ``max(value + 1, at_least)``.

        Raises:
            OSError: the file cannot be read or written.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = _parse_counter(os.pread(fd, 64, 0))
            new = max(current + 1, at_least)
            data = str(new).encode()
            # The new value has at least as many digits as the old: no truncation needed.
            os.pwrite(fd, data, 0)
            if self.durable:
                os.fsync(fd)
            return new
        finally:
            os.close(fd)  # Closing releases the lock.


def _parse_counter(data: bytes) -> int:
    text = data.strip()
    return int(text) if text.isdigit() else 0
