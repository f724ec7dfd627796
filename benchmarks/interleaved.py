"""EC CSR issuance of a baseline commit against this checkout, interleaved, in one command.

    .venv/bin/python benchmarks/interleaved.py                 # baseline 1a8b1b6, 3 rounds

The baseline gets a git worktree of its own (``--baseline-dir``, made with ``git worktree
add --detach`` when missing) and a virtualenv there with this checkout's locked service set
(``requirements/service.txt``) and the baseline's code installed over it, so the two builds
differ in nodecert's code only. This checkout runs from its own ``.venv`` (``make
.venv/.service`` makes it when missing).

Each round starts each build afresh (``nodecert serve``, 2 workers, the bench's settings:
``benchmarks/nodecert_server.py``), baseline first, and drives ``POST /generate-cert`` with
a client's P-256 CSR (``run.py``'s ``ec-csr``) at each concurrency (1 and 16). Two figures
per run:

- requests per second, which moves with whatever else the machine does;
- server CPU per certificate: the user + system CPU time of the server's process group
  (supervisor and workers, from ``/proc``) over the measured window, divided by the
  certificates issued. It moves far less when the machine is shared, so it is the figure
  to compare there.

The report ends with the median of each build and HEAD's change against the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:  # Run as a script: import ``benchmarks`` from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.cpu_per_cert import issuance_window
from benchmarks.nodecert_server import Nodecert
from benchmarks.run import make_csr
from benchmarks.services import SetupError

REPO = Path(__file__).resolve().parents[1]
BASELINE = "1a8b1b6"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured run: a build at one concurrency."""

    round: int
    build: str
    concurrency: int
    rps: float
    cpu_ms: float


def _run(argv: list[str], *, cwd: Path = REPO) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, cwd=cwd, check=True)


def head_executable() -> str:
    """This checkout's ``nodecert``, from its ``.venv`` (made when missing)."""
    script = REPO / ".venv" / "bin" / "nodecert"
    if not script.exists():
        _run(["make", ".venv/.service"])
    return str(script)


def baseline_executable(commit: str, directory: Path) -> str:
    """The baseline's ``nodecert``: its worktree and virtualenv, made when missing."""
    if not (directory / "pyproject.toml").exists():
        _run(["git", "worktree", "add", "--detach", str(directory), commit])
    python = directory / ".venv" / "bin" / "python"
    script = directory / ".venv" / "bin" / "nodecert"
    if not script.exists():
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(directory / ".venv")])
        pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
        _run([*pip, "--require-hashes", "-r", str(REPO / "requirements" / "service.txt")])
        _run([*pip, "--no-build-isolation", "-e", str(directory)])
    return str(script)


def measure(
    executable: str, *, concurrencies: list[int], requests: int, users: int
) -> dict[int, tuple[float, float]]:
    """{concurrency: (req/s, server CPU ms per certificate)} of one fresh server."""
    figures: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="nodecert-interleaved-") as home:
        server = Nodecert(Path(home), workers=2, users=users, executable=executable).start()
        try:
            variants = tuple(
                (
                    {"Authorization": f"Bearer {cred.token}"},
                    Nodecert.generate_body(cred.node, csr_pem=make_csr(cred.user, cred.node)),
                )
                for cred in server.credentials
            )
            for concurrency in concurrencies:
                try:
                    rps, cpu = issuance_window(
                        server, variants, concurrency=concurrency, requests=requests, warmup=300
                    )
                except RuntimeError as exc:
                    raise SetupError(f"{executable}: {exc}") from exc
                figures[concurrency] = (rps, cpu * 1e3)
        finally:
            server.stop()
    return figures


def summary(figures: list[Figure], concurrencies: list[int], names: list[str]) -> str:
    """A Markdown table: the median of each build, and the second's change from the first."""
    lines = [
        "| c | build | req/s (median) | server CPU ms/cert (median) | req/s per round |"
        " CPU ms/cert per round |",
        "|---|---|---|---|---|---|",
    ]
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for c in concurrencies:
        for name in names:
            runs = [f for f in figures if f.build == name and f.concurrency == c]
            rps = statistics.median(f.rps for f in runs)
            cpu = statistics.median(f.cpu_ms for f in runs)
            medians[name, c] = (rps, cpu)
            lines.append(
                f"| {c} | {name} | {rps:,.0f} | {cpu:.3f} |"
                f" {', '.join(f'{f.rps:,.0f}' for f in runs)} |"
                f" {', '.join(f'{f.cpu_ms:.3f}' for f in runs)} |"
            )
    base, head = names
    lines.append("")
    for c in concurrencies:
        (b_rps, b_cpu), (h_rps, h_cpu) = medians[base, c], medians[head, c]
        lines.append(
            f"c={c}: {head} req/s {h_rps / b_rps - 1:+.1%}, CPU per certificate"
            f" {h_cpu / b_cpu - 1:+.1%} against {base}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Set the builds up, run the rounds, print one line per run and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"commit (default {BASELINE})")
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        help="the baseline's worktree (default: ../nodecert-base-COMMIT beside this checkout)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16", help="comma-separated (1,16)")
    parser.add_argument("--requests", type=int, default=4000, help="per run (4000)")
    parser.add_argument("--users", type=int, default=4, help="users, each with a node (4)")
    parser.add_argument("--head-bin", help="this build's nodecert (default: .venv/bin/nodecert)")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c]
    directory = args.baseline_dir or REPO.parent / f"nodecert-base-{args.baseline}"
    builds = [
        (args.baseline, baseline_executable(args.baseline, directory.resolve())),
        ("HEAD", args.head_bin or head_executable()),
    ]
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    print(f"baseline {args.baseline} ({builds[0][1]}) against HEAD {head} ({builds[1][1]})")
    print(f"EC CSR, {args.requests} requests per run, {os.cpu_count()} CPUs", flush=True)
    figures: list[Figure] = []
    for round_ in range(1, args.rounds + 1):
        for name, executable in builds:
            runs = measure(
                executable, concurrencies=concurrencies, requests=args.requests, users=args.users
            )
            load = os.getloadavg()[0]
            for c, (rps, cpu) in runs.items():
                figures.append(Figure(round_, name, c, rps, cpu))
                print(
                    f"round {round_} {name:8} c={c:<3} {rps:7,.0f} req/s"
                    f" {cpu:6.3f} ms CPU/cert  load {load:.1f}",
                    flush=True,
                )
    print()
    print(summary(figures, concurrencies, [name for name, _ in builds]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
