"""Writing a certificate, its key and its chain together: all of them or none."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OutputFile", "write_together"]


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file to write: where, what (``data`` is left out of ``repr``: it may be a key)."""

    path: Path
    data: bytes = field(repr=False)
    mode: int = 0o644


def write_together(files: Sequence[OutputFile]) -> None:
    """Write every file to a temporary next to its target, then rename them all into place.

    Readers see the old or the new version of each file, never half of one. Nothing is
    renamed until every temporary is fully written and synced; on any failure every
    temporary is removed, so a private key is never left in a stray file. Each temporary
    is created with its final ``mode`` (``0o600`` for a key) before a byte is written.

    Raises:
        OSError: a file could not be written or renamed (``filename`` names it).
    """
    written: list[tuple[str, Path]] = []
    try:
        for item in files:
            written.append((_write_temporary(item), item.path))
        while written:
            temporary, target = written[0]
            try:
                os.replace(temporary, target)
            except OSError as exc:
                exc.filename = str(target)
                raise
            written.pop(0)
    finally:
        for temporary, _ in written:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    for directory in {item.path.parent for item in files}:
        _sync_directory(directory)


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
