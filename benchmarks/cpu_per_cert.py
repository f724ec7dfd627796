"""CPU per certificate of ``nodecert serve``: two builds, interleaved, on a shared machine.

Requests per second move by 3x between identical runs when other work shares the two
cores; the CPU time the server's processes spend per issued certificate barely does, so it
compares two builds fairly where req/s cannot. Each round starts each build afresh (2
workers, the bench's settings), drives ``POST /generate-cert`` (EC P-256, server keygen)
at one concurrency, and divides the CPU time of the server's process group (supervisor
and workers, from ``/proc``) by the certificates issued. Builds alternate within every
round, so a busy minute falls on both.

    .venv/bin/python benchmarks/cpu_per_cert.py \\
        --build before=/tmp/base/.venv/bin/nodecert --build after=.venv/bin/nodecert
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

if not __package__:  # Run as a script: import ``benchmarks`` from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.load import LoadSpec, run_in_subprocess
from benchmarks.nodecert_server import Nodecert

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of the live processes of process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # Gone meanwhile.
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # Field 5, pgrp.
            total += int(fields[11]) + int(fields[12])  # Fields 14 and 15, utime and stime.
    return total / _TICK


Variants = tuple[tuple[dict[str, str], bytes], ...]


def issuance_spec(
    server: Nodecert,
    variants: Variants,
    *,
    concurrency: int,
    requests: int,
    max_seconds: float = 60.0,
) -> LoadSpec:
    """``POST /generate-cert`` with ``variants`` (headers, body), each answer a 201."""
    return LoadSpec(
        host="127.0.0.1",
        port=server.port,
        path="/generate-cert",
        headers={"Content-Type": "application/json"},
        variants=variants,
        expect_status=201,
        expect_body=b'"certificate"',
        concurrency=concurrency,
        max_requests=requests,
        max_seconds=max_seconds,
        warmup=0,
    )


def issuance_window(
    server: Nodecert, variants: Variants, *, concurrency: int, requests: int, warmup: int
) -> tuple[float, float]:
    """(req/s, server CPU seconds per certificate) of ``requests`` issuances at
    ``concurrency``, after a warm-up run of ``warmup`` requests of its own, so that the CPU
    window holds counted requests only.

    Raises:
        RuntimeError: a request failed (the server's log tail is in the message).
    """
    assert server.service is not None
    assert server.service.proc is not None
    pgid = server.service.proc.pid
    spec = issuance_spec(server, variants, concurrency=concurrency, requests=requests)
    run_in_subprocess(dataclasses.replace(spec, max_requests=warmup))
    before = group_cpu_seconds(pgid)
    result = run_in_subprocess(spec)
    used = group_cpu_seconds(pgid) - before
    if result.errors or not result.ok:
        raise RuntimeError(f"{result.errors} errors {result.error_kinds}\n{server.tail()}")
    return result.rps, used / result.ok


def one_run(executable: str, *, concurrency: int, requests: int) -> tuple[float, float]:
    """(CPU µs per certificate, req/s) of one fresh server of ``executable``."""
    with tempfile.TemporaryDirectory(prefix="nodecert-cpu-") as home:
        server = Nodecert(Path(home), workers=2, users=4, executable=executable).start()
        try:
            variants = tuple(
                (
                    {"Authorization": f"Bearer {cred.token}"},
                    Nodecert.generate_body(cred.node, key_type="ec-p256"),
                )
                for cred in server.credentials
            )
            try:
                rps, cpu = issuance_window(
                    server, variants, concurrency=concurrency, requests=requests, warmup=200
                )
            except RuntimeError as exc:
                raise SystemExit(f"{executable}: {exc}") from exc
            return cpu * 1e6, rps
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print one line per run and a median per build."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args(argv)
    builds = [tuple(b.split("=", 1)) for b in args.build]
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in builds}
    for round_ in range(1, args.rounds + 1):
        for name, path in builds:
            cpu, rps = one_run(path, concurrency=args.concurrency, requests=args.requests)
            figures[name].append((cpu, rps))
            load = os.getloadavg()[0]
            print(
                f"round {round_} {name:8} {cpu:7.0f} µs CPU/cert {rps:8.0f} req/s  load {load:.1f}",
                flush=True,
            )
    for name, runs in figures.items():
        cpus = sorted(c for c, _ in runs)
        print(
            f"{name:8} median {statistics.median(cpus):7.0f} µs CPU/cert"
            f" (min {cpus[0]:.0f}, max {cpus[-1]:.0f}), req/s {[round(r) for _, r in runs]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
