"""A bounded HTTP/1.1 load generator for loopback benchmarks (standard library only).

Every run is bounded twice: by a request count and by a wall-clock cap, whichever comes
first; requests still in flight at the cap get ``timeout`` more seconds and are then counted
as errors. Connections are opened (and warmed with ``warmup`` requests each) before the
clock starts, and are kept alive for the whole run.

Why asyncio with a hand-written HTTP/1.1 client (the ``asyncio`` engine, the default): on a
2-core machine the generator shares the CPU with the server it measures, so its CPU cost per
request is what matters. Measured against a trivial loopback endpoint with
``benchmarks/calibrate.py`` (2 cores, Python 3.11), CPU per request at c=1/4/16:

- ``asyncio`` engine (this module):           41 / 28 / 27 us
- ``threads`` engine (``http.client``, kept):  67 / 97 / 149 us (16 threads fight for the GIL)
- ``httpx.AsyncClient``:                      648 / 639 / 1374 us (pool and header models)

The request bytes are built once; per response it only finds the status code and the body
framing (Content-Length or chunked), which is all a benchmark needs.

The generator measures its own CPU time (``resource.getrusage`` of its process, all threads)
over the measured window and reports it as a share of one core, so a report can show that
the generator was not the bottleneck.

Run it in its own process (``run_in_subprocess``) so that its CPU is separate from the
harness's: ``python benchmarks/load.py`` reads a JSON spec on stdin and prints a JSON result.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

__all__ = ["LoadResult", "LoadSpec", "percentile", "run", "run_in_subprocess"]

ENGINES = ("asyncio", "threads")


@dataclass(frozen=True)
class LoadSpec:
    """What to send, to where, how often and for how long.

    Attributes:
        host, port: the server (loopback only).
        path: request target, e.g. ``/generate-cert``.
        body: the request body, sent unchanged with every request.
        headers: extra request headers (Host, Content-Length and keep-alive are added).
        method: the HTTP method.
        expect_status: the status that counts as a success; anything else is an error.
        expect_body: a byte string every successful body must contain (empty: no check).
        concurrency: connections, each with one request in flight at a time.
        max_requests: measured requests in total (the warm-up is not counted).
        max_seconds: the wall-clock cap of the measured window.
        warmup: unmeasured requests per connection before the clock starts.
        timeout: grace for in-flight requests after the cap, and the connect timeout.
        engine: ``asyncio`` (default) or ``threads``.
        variants: per-connection (extra headers, body) pairs, used round-robin by
            connection number (e.g. one user's token and node per connection); empty: all
            connections send ``headers`` and ``body``.
        rate: requests per second for the whole run, sent on a fixed schedule (open
            loop, asyncio engine only); a latency is then measured from the request's
            scheduled time, so time spent queued behind a slow server counts. 0: closed
            loop, each connection sends as soon as it has its answer.
    """

    host: str
    port: int
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    expect_status: int = 200
    expect_body: bytes = b""
    concurrency: int = 1
    max_requests: int = 1000
    max_seconds: float = 10.0
    warmup: int = 1
    timeout: float = 30.0
    engine: str = "asyncio"
    variants: tuple[tuple[dict[str, str], bytes], ...] = ()
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine: {self.engine!r} is not one of {ENGINES}")
        if self.concurrency < 1 or self.max_requests < 1 or self.max_seconds <= 0:
            raise ValueError("concurrency, max_requests and max_seconds must be positive")
        if self.rate < 0 or (self.rate and self.engine != "asyncio"):
            raise ValueError("rate: must be >= 0, and needs the asyncio engine")

    def request_for(self, connection: int) -> tuple[dict[str, str], bytes]:
        """The headers and body that connection number ``connection`` sends."""
        if not self.variants:
            return self.headers, self.body
        headers, body = self.variants[connection % len(self.variants)]
        return {**self.headers, **headers}, body

    def request_bytes(self, connection: int = 0) -> bytes:
        """The full HTTP/1.1 request of one connection, built once and sent as is."""
        headers, body = self.request_for(connection)
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
        return "\r\n".join(lines).encode("latin-1") + body

    def to_json(self) -> str:
        """Serialise for the subprocess (bodies are base64)."""
        data = asdict(self)
        data["body"] = base64.b64encode(self.body).decode()
        data["expect_body"] = base64.b64encode(self.expect_body).decode()
        data["variants"] = [[h, base64.b64encode(b).decode()] for h, b in self.variants]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> LoadSpec:
        """The inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["body"] = base64.b64decode(data["body"])
        data["expect_body"] = base64.b64decode(data["expect_body"])
        data["variants"] = tuple((h, base64.b64decode(b)) for h, b in data["variants"])
        return cls(**data)


@dataclass(frozen=True)
class LoadResult:
    """What one bounded run measured. Latencies are in milliseconds.

    ``cpu_share`` is the generator's CPU time over the measured wall time (1.0 = one core
    busy); ``cpu_us_per_request`` is the same cost per completed request.
    """

    concurrency: int
    requests: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    wall_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float
    cpu_share: float
    cpu_us_per_request: float
    engine: str

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        """Parse the subprocess's output."""
        return cls(**json.loads(text))


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when it is empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Tally:
    """Latencies of successful requests and counts of failures, shared by all workers."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.issued = 0
        self.lock = threading.Lock()
        self.deadline = 0.0
        self.started = 0.0

    def take(self) -> float | None:
        """Reserve one request if the budget and the clock allow it.

        Returns:
            When to send it (``perf_counter`` time: now, or its slot on the schedule of a
            paced run), or None when the run is over.
        """
        with self.lock:
            now = time.perf_counter()
            if self.issued >= self.spec.max_requests or now >= self.deadline:
                return None
            slot = self.started + self.issued / self.spec.rate if self.spec.rate else now
            if slot >= self.deadline:
                return None
            self.issued += 1
            return slot

    def record(self, status: int, body: bytes, seconds: float) -> None:
        if status != self.spec.expect_status:
            self.errors[f"http {status}"] += 1
        elif self.spec.expect_body and self.spec.expect_body not in body:
            self.errors["unexpected body"] += 1
        else:
            self.latencies.append(seconds)

    def result(self, wall: float, cpu: float) -> LoadResult:
        lat = sorted(x * 1000.0 for x in self.latencies)
        errors = sum(self.errors.values())
        done = len(lat) + errors
        return LoadResult(
            concurrency=self.spec.concurrency,
            requests=done,
            ok=len(lat),
            errors=errors,
            error_kinds=dict(self.errors),
            wall_s=round(wall, 4),
            rps=round(len(lat) / wall, 2) if wall > 0 else 0.0,
            p50_ms=round(percentile(lat, 0.50), 3),
            p90_ms=round(percentile(lat, 0.90), 3),
            p99_ms=round(percentile(lat, 0.99), 3),
            max_ms=round(lat[-1], 3) if lat else 0.0,
            cpu_s=round(cpu, 4),
            cpu_share=round(cpu / wall, 4) if wall > 0 else 0.0,
            cpu_us_per_request=round(cpu / done * 1e6, 1) if done else 0.0,
            engine=self.spec.engine,
        )


# -- asyncio engine: one coroutine per keep-alive connection, raw HTTP/1.1 on streams ------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one response: (status, body, server wants the connection closed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    start = lower.find(b"\r\ncontent-length:")
    if start >= 0:
        end = lower.index(b"\r\n", start + 2)
        return status, await reader.readexactly(int(lower[start + 17 : end])), close
    if b"\r\ntransfer-encoding: chunked" in lower:
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                # No trailers from the servers we measure: the empty line ends the body.
                await reader.readline()
                return status, b"".join(chunks), close
            chunks.append((await reader.readexactly(size + 2))[:-2])
    # Neither framing: the body runs to the end of the connection.
    return status, await reader.read(), True


async def _connect(spec: LoadSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(spec.host, spec.port, limit=1 << 20), spec.timeout
    )
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _async_worker(
    tally: _Tally, request: bytes, ready: asyncio.Semaphore, start: asyncio.Event
) -> None:
    spec = tally.spec
    try:
        reader, writer = await _connect(spec)
        for _ in range(spec.warmup):
            writer.write(request)
            _, _, close = await _read_response(reader)
            if close:
                writer.close()
                reader, writer = await _connect(spec)
    finally:
        ready.release()
    try:
        await start.wait()
        while (slot := tally.take()) is not None:
            if slot > time.perf_counter():
                await asyncio.sleep(slot - time.perf_counter())
            began = slot if spec.rate else time.perf_counter()
            try:
                writer.write(request)
                status, body, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.errors[type(exc).__name__] += 1
                close = True
            else:
                tally.record(status, body, time.perf_counter() - began)
            if close:
                writer.close()
                reader, writer = await _connect(spec)
    finally:
        writer.close()


async def _run_async(spec: LoadSpec) -> LoadResult:
    tally = _Tally(spec)
    ready, start = asyncio.Semaphore(0), asyncio.Event()
    tasks = [
        asyncio.create_task(_async_worker(tally, spec.request_bytes(i), ready, start))
        for i in range(spec.concurrency)
    ]
    # Every worker connects and warms up before the clock starts.
    async with asyncio.timeout(spec.timeout * (spec.warmup + 1)):
        for _ in tasks:
            await ready.acquire()
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    tally.deadline = wall0 + spec.max_seconds
    tally.started = wall0
    start.set()
    done, pending = await asyncio.wait(tasks, timeout=spec.max_seconds + spec.timeout)
    for task in pending:
        task.cancel()
        tally.errors["timeout"] += 1
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    for task in done:
        exc = task.exception()
        if exc is not None:
            tally.errors[f"worker {type(exc).__name__}: {exc}"] += 1
    return tally.result(wall, cpu)


# -- threads engine: http.client persistent connections, one thread per connection ---------


def _thread_worker(
    tally: _Tally,
    connection: int,
    ready: threading.Semaphore,
    start: threading.Event,
    failures: Counter[str],
) -> None:
    spec = tally.spec
    headers, body = spec.request_for(connection)
    headers = {**headers, "Connection": "keep-alive"}
    try:
        conn = http.client.HTTPConnection(spec.host, spec.port, timeout=spec.timeout)
        for _ in range(spec.warmup):
            conn.request(spec.method, spec.path, body, headers)
            conn.getresponse().read()
    except Exception as exc:  # Reported in the result, not raised.
        failures[f"worker {type(exc).__name__}: {exc}"] += 1
        return
    finally:
        ready.release()
    start.wait()
    try:
        while tally.take() is not None:
            began = time.perf_counter()
            try:
                conn.request(spec.method, spec.path, body, headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                with tally.lock:
                    tally.errors[type(exc).__name__] += 1
                conn.close()
                continue
            elapsed = time.perf_counter() - began
            with tally.lock:
                tally.record(response.status, body, elapsed)
    finally:
        conn.close()


def _run_threads(spec: LoadSpec) -> LoadResult:
    tally = _Tally(spec)
    ready, start, failures = threading.Semaphore(0), threading.Event(), Counter[str]()
    threads = [
        threading.Thread(
            target=_thread_worker, args=(tally, i, ready, start, failures), daemon=True
        )
        for i in range(spec.concurrency)
    ]
    for thread in threads:
        thread.start()
    for _ in threads:
        if not ready.acquire(timeout=spec.timeout * (spec.warmup + 1)):
            raise TimeoutError("load: workers did not connect in time")
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    tally.deadline = wall0 + spec.max_seconds
    tally.started = wall0
    start.set()
    cap = wall0 + spec.max_seconds + spec.timeout
    for thread in threads:
        thread.join(max(0.0, cap - time.perf_counter()))
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    with tally.lock:
        tally.errors.update(failures)
        alive = sum(t.is_alive() for t in threads)
        if alive:
            tally.errors["timeout"] += alive
        return tally.result(wall, cpu)


def run(spec: LoadSpec) -> LoadResult:
    """Run one bounded load in this process and return what it measured."""
    if spec.engine == "threads":
        return _run_threads(spec)
    return asyncio.run(_run_async(spec))


def run_in_subprocess(spec: LoadSpec) -> LoadResult:
    """Run one bounded load in a fresh Python process (so its CPU is its own).

    Raises:
        RuntimeError: if the generator process fails.
    """
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__)],
        input=spec.to_json(),
        capture_output=True,
        text=True,
        timeout=spec.max_seconds + spec.timeout * (spec.warmup + 2) + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stderr.strip()}")
    return LoadResult.from_json(proc.stdout)


def main() -> int:
    """Read a :class:`LoadSpec` as JSON on stdin, print a :class:`LoadResult` as JSON."""
    spec = LoadSpec.from_json(sys.stdin.read())
    print(json.dumps(asdict(run(spec))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
