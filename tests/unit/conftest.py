"""Fixtures of the unit tests: a local CA in memory, an in-memory store, an authority.

Unit tests are pure: no files, no sockets. A test that needs a CA on disk, a SQLite file
or a server belongs in ``tests/integration``.
"""

import builtins
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from nodecert.testing import MemoryStore
from tests.kit import authority, new_ca


@pytest.fixture
def ca():
    return new_ca()


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def auth(ca, store):
    return authority(ca, store)


# Purity, enforced: a unit test that asks for a temporary directory, opens a socket or
# writes a file fails, naming what it did. Python's own bytecode cache and Hypothesis's
# example database are not the test's doing and pass.
#
# The guard patches the openers for the test's duration rather than adding an audit hook:
# an audit hook is process-wide and runs Python code inside ``sys.settrace``, where Python
# 3.11 holds a process-wide "being installed" flag; a thread switch there made a thread
# started by another test fail with "Cannot install a trace function while another trace
# function is being installed" under coverage.
_TEMPORARY = {"tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ALLOWED_WRITES = ("__pycache__", ".hypothesis", os.devnull)


def _refuse_writes(path: object, writes: bool) -> None:
    if writes and not any(part in str(path) for part in _ALLOWED_WRITES):
        raise RuntimeError(f"unit tests are pure: {path} opened for writing (tests/integration)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and _TEMPORARY & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid}: unit tests are pure; move it to integration")


@pytest.fixture(autouse=True)
def _scratch_cwd() -> None:
    # tests/conftest.py moves every other test into an empty directory; a unit test opens
    # no file for writing anyway (below), so it needs no directory of its own.
    return None


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests are pure: no sockets (tests/integration)")

    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        _refuse_writes(file, any(c in mode for c in "wax+"))
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        _refuse_writes(path, bool(flags & _WRITE_FLAGS))
        return real_os_open(path, flags, *args, **kwargs)

    # pathlib and tempfile look these up on their modules at call time.
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
