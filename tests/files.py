"""A directory nothing can be written in, for root too (CI containers run as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[Path]:
    """Make ``directory`` refuse new entries (mode 0500, or ``chattr +i`` for root)."""
    if os.getuid() != 0:
        directory.chmod(0o500)
        try:
            yield directory
        finally:
            directory.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], check=False).returncode:
        pytest.skip("running as root without chattr +i: no directory is unwritable")
    try:
        yield directory
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)
