"""Measure the load generator's own cost against a trivial loopback endpoint.

``python benchmarks/calibrate.py`` starts :func:`serve_trivial` in a child process (a
raw-asyncio HTTP/1.1 server that answers every request with a fixed 200, about the
cheapest server Python can be) and drives it with each engine of ``load.py`` at the
concurrencies of the benchmark. The figure that matters is the generator's CPU per
request: the benchmark's generator cost is that times the request rate of the real server.
``run.py`` calls :func:`calibrate` once per run and reports the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

if not __package__:  # Run as a script: make the ``benchmarks`` package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.load import LoadResult, LoadSpec, run_in_subprocess

__all__ = ["calibrate", "serve_trivial", "trivial_server"]

_RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'
)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            start = lower.find(b"\r\ncontent-length:")
            if start >= 0:
                end = lower.index(b"\r\n", start + 2)
                await reader.readexactly(int(lower[start + 17 : end]))
            writer.write(_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def serve_trivial(port: int) -> None:
    """Serve the fixed response on 127.0.0.1:``port`` until killed."""
    asyncio.run(_serve(port))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        TimeoutError: if nothing does within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def trivial_server() -> Iterator[int]:
    """Run :func:`serve_trivial` in a child process; yield its port; stop it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port)])
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def calibrate(
    *,
    engines: tuple[str, ...] = ("asyncio",),
    concurrencies: tuple[int, ...] = (1, 4, 16),
    requests: int = 5000,
    seconds: float = 2.0,
) -> list[LoadResult]:
    """Drive the trivial server with each engine and concurrency; return the results."""
    results = []
    body = b'{"nodeId": "calibration", "keyType": "ec-p256"}'
    with trivial_server() as port:
        for engine in engines:
            for concurrency in concurrencies:
                spec = LoadSpec(
                    host="127.0.0.1",
                    port=port,
                    path="/calibrate",
                    body=body,
                    headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
                    concurrency=concurrency,
                    max_requests=requests,
                    max_seconds=seconds,
                    engine=engine,
                )
                results.append(run_in_subprocess(spec))
    return results


def main(argv: list[str] | None = None) -> int:
    """Print each engine's CPU per request against the trivial server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.serve:
        serve_trivial(args.serve)
        return 0
    print(
        f"{'engine':8} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu':>6} {'us/req':>7}"
    )
    for r in calibrate(
        engines=("asyncio", "threads"), requests=args.requests, seconds=args.seconds
    ):
        print(
            f"{r.engine:8} {r.concurrency:3} {r.rps:8.0f} {r.p50_ms:7.3f} {r.p99_ms:7.3f} "
            f"{r.cpu_share:6.0%} {r.cpu_us_per_request:7.1f}  errors={r.errors}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
