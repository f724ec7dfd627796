"""Fixtures of the unit tests: a local CA in memory, an in-memory store, an authority.

Unit tests are pure: no files, no sockets. A test that needs a CA on disk, a SQLite file
or a server belongs in ``tests/integration``.
"""

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodecert.testing import MemoryStore
from tests.nodeside import authority, new_ca


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
_TEMPORARY = {"tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ALLOWED_WRITES = ("__pycache__", ".hypothesis", os.devnull)
_guarding = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _guarding or event != "open":
        return
    path, mode, flags = args
    writes = (
        any(c in mode for c in "wax+")
        if isinstance(mode, str)
        else isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
    )
    if writes and not any(part in str(path) for part in _ALLOWED_WRITES):
        raise RuntimeError(f"unit tests are pure: {path} opened for writing (tests/integration)")


sys.addaudithook(_audit)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and _TEMPORARY & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid}: unit tests are pure; move it to integration")


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _guarding

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests are pure: no sockets (tests/integration)")

    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    _guarding = True
    try:
        yield
    finally:
        _guarding = False
