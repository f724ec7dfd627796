"""Writing a certificate, its key and its chain together: all of them or none."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MAX_PEM_BYTES", "OutputFile", "ensure_room", "read_small", "write_together"]


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file to write: where, what (``data`` is left out of ``repr``: it may be a key)."""

    path: Path
    data: bytes = field(repr=False)
    mode: int = 0o644
    owner: tuple[int, int] | None = None  # (uid, gid) to give it, when allowed to


MAX_PEM_BYTES = 1 << 20
"""The most a certificate, key, CSR or CA bundle file may hold (1 MiB)."""


def read_small(path: Path, limit: int = MAX_PEM_BYTES) -> bytes:
    """Read ``path`` whole, refusing anything over ``limit`` bytes (``/dev/zero``, a disk image).

    Raises:
        OSError: unreadable, or too large (``EFBIG``, ``filename`` = the path).
    """
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // (1 << 20)} MiB", str(path))
    return data


def ensure_room(directory: Path, size: int = 16384) -> None:
    """Check that ``size`` bytes can be written and synced in ``directory`` (then freed).

    What cannot be undone (a renewal supersedes the old certificate) asks this first, so
    that a full disk fails before it, not after.

    Raises:
        OSError: no room (``filename`` names the directory), or no directory.
    """
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".nodecert-room.", suffix=".tmp")
    except OSError as exc:
        exc.filename = str(directory)
        raise
    try:
        zeros = bytes(4096)
        for _ in range(0, size, len(zeros)):
            os.write(fd, zeros)
        os.fsync(fd)
    except OSError as exc:
        exc.filename = str(directory)
        raise
    finally:
        os.close(fd)
        _unlink(name)


def write_together(files: Sequence[OutputFile]) -> None:
    """Write every file to a temporary next to its target, then rename them all into place.

    Readers see the old or the new version of each file, never half of one. Nothing is
    renamed until every temporary is fully written and synced; on any failure every
    temporary is removed, so a private key is never left in a stray file. Each temporary
    is created with its final ``mode`` (``0o600`` for a key) before a byte is written.
    If a rename fails after others succeeded, those are undone (each replaced file is
    kept under a hard link until every rename is done), so a certificate and its key on
    disk stay a pair.

    Raises:
        OSError: a file could not be written or renamed (``filename`` names it).
    """
    written: list[tuple[str, Path]] = []
    replaced: list[tuple[Path, str | None]] = []  # (target, hard link to its old version)
    try:
        for item in files:
            written.append((_write_temporary(item), item.path))
        while written:
            temporary, target = written[0]
            old = _keep_old(target)
            try:
                os.replace(temporary, target)
            except OSError as exc:
                if old is not None:
                    _unlink(old)
                exc.filename = str(target)
                raise
            replaced.append((target, old))
            written.pop(0)
    except BaseException:
        _undo(replaced)
        replaced.clear()
        raise
    finally:
        for temporary, _ in written:
            _unlink(temporary)
        for _, old in replaced:
            if old is not None:
                _unlink(old)
    for directory in {item.path.parent for item in files}:
        _sync_directory(directory)


def _keep_old(target: Path) -> str | None:
    """A hard link to ``target``'s current version (None when there is none)."""
    if not os.path.lexists(target) or (target.is_dir() and not target.is_symlink()):
        return None
    name = f"{target.parent}/.{target.name}.{os.urandom(6).hex()}.old"
    try:
        os.link(target, name, follow_symlinks=False)  # A symbolic link comes back as one.
    except OSError as exc:
        exc.filename = str(target)
        raise
    return name


def _undo(replaced: list[tuple[Path, str | None]]) -> None:
    for target, old in reversed(replaced):
        with contextlib.suppress(OSError):
            if old is None:
                os.unlink(target)
            else:
                os.replace(old, target)


def _unlink(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _write_temporary(item: OutputFile) -> str:
    try:
        prefix = f".{item.path.name}."
        fd, name = tempfile.mkstemp(dir=item.path.parent, prefix=prefix, suffix=".tmp")
    except OSError as exc:
        exc.filename = str(item.path)
        raise
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), item.mode)
            if item.owner is not None and item.owner != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):  # Only root may give files away.
                    os.fchown(out.fileno(), *item.owner)
            out.write(item.data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(name)
        if isinstance(exc, OSError):
            exc.filename = str(item.path)
        raise
    return name


def _sync_directory(directory: Path) -> None:
    # The renames survive a power cut only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
