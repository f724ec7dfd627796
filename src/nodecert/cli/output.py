"""Output files of ``request``, ``nodes certificate``, ``renew``: checked first, written together.

Everything that can be checked is checked *before* the server is called, so a refusal
never leaves an issued certificate without its files: the directory exists, is writable
and has room (16 KiB are written, synced and removed in it), and no file would be
overwritten without ``--force``. Then the files are written to temporaries and renamed together
(:func:`nodecert.client._files.write_together`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from nodecert.cli.common import CLIError
from nodecert.client._files import OutputFile, ensure_room, write_together

__all__ = ["OutputFile", "check_files", "check_outputs", "check_writable", "write_outputs"]


def check_writable(directory: Path, *, option: str) -> None:
    """Raise :class:`CLIError` unless new files can be created in ``directory``."""
    if not directory.is_dir():
        raise CLIError(f"{option}: {directory} is not a directory")
    try:
        # A little more than the files need, written and synced: a full disk fails here,
        # before a certificate is issued (or a renewal supersedes the old one).
        ensure_room(directory)
    except OSError as exc:
        raise CLIError(f"{option}: cannot write in {directory}: {exc.strerror}") from None


def check_outputs(
    directory: Path,
    names: Sequence[str],
    *,
    force: bool,
    option: str = "--out",
    unchanged: Callable[[Path], bool] = lambda path: False,
) -> list[Path]:
    """Check that ``names`` can be written in ``directory``; return their paths.

    Args:
        directory: The output directory.
        names: The file names to write.
        force: Whether existing files may be replaced.
        option: The option that named the directory, for messages.
        unchanged: Says whether an existing file already holds what would be written
            (the CA chain, say): such a file is no conflict.

    Raises:
        CLIError: not a writable directory, a name taken by a directory, or existing
            files without ``force`` (naming every one).
    """
    check_writable(directory, option=option)
    paths = [directory / name for name in names]
    taken = [p for p in paths if p.is_dir()]
    if taken:
        raise CLIError(f"{taken[0]}: is a directory")
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    conflicts = [p for p in existing if not _same(p, unchanged)]
    if conflicts and not force:
        shown = ", ".join(str(p) for p in conflicts)
        raise CLIError(f"would overwrite {shown}: use --force to replace, or another --out")
    return paths


def check_files(
    paths: Sequence[Path],
    *,
    force: bool,
    unchanged: Callable[[Path], bool] = lambda path: False,
) -> None:
    """Like :func:`check_outputs`, for files named one by one (in any directories).

    Raises:
        CLIError: a directory that is missing or not writable, a name taken by a
            directory, or existing files without ``force`` (naming every one).
    """
    for directory in dict.fromkeys(path.parent for path in paths):
        check_writable(directory, option="output")
    taken = [p for p in paths if p.is_dir()]
    if taken:
        raise CLIError(f"{taken[0]}: is a directory")
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    conflicts = [p for p in existing if not _same(p, unchanged)]
    if conflicts and not force:
        shown = ", ".join(str(p) for p in conflicts)
        raise CLIError(f"would overwrite {shown}: use --force to replace, or other file names")


def _same(path: Path, unchanged: Callable[[Path], bool]) -> bool:
    try:
        return unchanged(path)
    except OSError:
        return False


def write_outputs(files: Sequence[OutputFile], *, issued: str) -> None:
    """Write ``files`` together, or none of them.

    Raises:
        CLIError: a write failed; nothing was written, and the message names the
            certificate (``issued``) that was issued all the same.
    """
    try:
        write_together(files)
    except OSError as exc:
        raise CLIError(
            f"{exc.filename}: {exc.strerror}; no file was written ({issued} was issued:"
            " revoke it if you will not use it)"
        ) from None
