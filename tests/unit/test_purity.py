"""The unit tests' purity guard refuses what it says it refuses."""

import os
import socket
import tempfile
from pathlib import Path

import pytest


def _scratch() -> str:
    return os.path.join(tempfile.gettempdir(), f"nodecert-purity-{os.getpid()}")


@pytest.mark.parametrize(
    "write",
    [
        lambda p: open(p, "w"),  # noqa: SIM115
        lambda p: Path(p).write_text("x"),
        lambda p: Path(p).touch(),
        lambda p: os.open(p, os.O_WRONLY | os.O_CREAT, 0o600),
        lambda p: tempfile.NamedTemporaryFile(dir=os.path.dirname(p)),  # noqa: SIM115
    ],
    ids=["open", "write_text", "touch", "os.open", "tempfile"],
)
def test_writing_a_file_fails_naming_it(write) -> None:
    with pytest.raises(RuntimeError, match="unit tests are pure"):
        write(_scratch())
    assert not os.path.exists(_scratch())


def test_reading_a_file_passes() -> None:
    with open(__file__, encoding="utf-8") as f:
        assert "purity" in f.read()


def test_opening_a_socket_fails() -> None:
    with socket.socket() as s, pytest.raises(RuntimeError, match="no sockets"):
        s.connect(("127.0.0.1", 9))
