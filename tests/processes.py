"""Real `nodecert` processes for the tests that need one: environment, start, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NODECERT = str(Path(sys.executable).parent / "nodecert")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nodecert_env(home: Path, port: int | None = None, **settings: str) -> dict[str, str]:
    """This process's environment without any NODECERT_ variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODECERT_")}
    env["NODECERT_HOME"] = str(home)
    if port is not None:
        env["NODECERT_PORT"] = str(port)
    env.update({f"NODECERT_{name.upper()}": value for name, value in settings.items()})
    return env


def cli(env: dict[str, str], *args: str) -> str:
    """Run ``nodecert ARGS``; return its standard output."""
    done = subprocess.run([NODECERT, *args], env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def start_server(
    env: dict[str, str], log: Path, *, command: str = NODECERT
) -> subprocess.Popen[bytes]:
    """``nodecert serve`` in its own process group, once it answers ``/healthz``."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [command, "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{env['NODECERT_PORT']}/healthz"
    deadline = time.monotonic() + 30  # Not a count of tries: a try that hangs takes 1 s.
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"nodecert serve exited:\n{log.read_text()}") from None
            time.sleep(0.1)
    stop_server(process)
    raise AssertionError("nodecert serve did not answer /healthz within 30 s")


def stop_server(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the server's whole process group (master and workers) and wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.wait(timeout=20)
