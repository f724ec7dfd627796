"""Instructions per issued certificate, counted by valgrind: the figure noise cannot move.

    .venv/bin/python benchmarks/instructions.py                       # this checkout
    .venv/bin/python benchmarks/instructions.py \\
        --build 1a8b1b6=/work/wt/base1a8/.venv/bin/nodecert --build HEAD=.venv/bin/nodecert

On a shared 2-core machine, requests per second move by ±15% between identical runs and
the server's CPU time per certificate by ±10% (docs/performance.md), which hides a change
of a few per cent. This counts instructions instead: each build's ``nodecert serve`` (one
worker, the bench's settings: ``benchmarks/nodecert_server.py``) runs under valgrind's
callgrind tool, serves a warm-up, and then the instructions of the whole process (event
loop, ledger committer and every other thread) are counted over ``--requests`` EC P-256
CSR issuances (``POST /generate-cert``, ``run.py``'s ``ec-csr``) at ``--concurrency``.
Two runs of one build agree within 0.1%.

What it leaves out: time in the kernel (system calls, fsync) and what the CPU does per
instruction (cache misses, the GIL's hand-offs), so it complements
``benchmarks/interleaved.py`` (time, noisy) rather than replacing it. valgrind runs the
server about 50 times slower: ~40 s per build for 200 requests. Work done once per
*second* rather than per request weighs 50 times more per certificate for that: the
metrics flush (once a second) would add ~35,000 instructions per certificate that cost
~700 at full speed. So a build that knows ``NODECERT_METRICS_FLUSH_S`` is run with it at 50
(``--env NAME:VAR=VALUE`` sets any variable for one build; ``--env HEAD:`` none).

Needs valgrind (Debian: ``apt-get install valgrind``); without it the script says so and
exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:  # Run as a script: import ``benchmarks`` from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.cpu_per_cert import issuance_spec
from benchmarks.load import run_in_subprocess
from benchmarks.nodecert_server import Nodecert
from benchmarks.run import make_csr
from benchmarks.services import SetupError

REPO = Path(__file__).resolve().parents[1]

# Runs ``nodecert serve`` under callgrind and any other command as it is (the bench's
# provisioning calls the same executable for `nodes add` and `dev-token`).
_WRAPPER = """#!/bin/sh
if [ "$1" = "serve" ]; then
  exec valgrind --tool=callgrind --callgrind-out-file="$BENCH_CALLGRIND_OUT.%p" \\
    --dump-instr=no --collect-systime=no "$BENCH_NODECERT_EXE" "$@"
fi
exec "$BENCH_NODECERT_EXE" "$@"
"""


def _summary(path: Path) -> int:
    """The instruction total of one callgrind dump."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SetupError(f"{path}: no summary line (not a callgrind dump?)")


def count(
    executable: str,
    *,
    requests: int,
    concurrency: int,
    warmup: int,
    env: dict[str, str],
    keep: Path | None = None,
) -> float:
    """Instructions per certificate of one build (one run), with ``env`` set for it; the
    window's callgrind dump is copied to ``keep`` when given."""
    with tempfile.TemporaryDirectory(prefix="nodecert-instructions-") as scratch:
        wrapper = Path(scratch) / "nodecert"
        wrapper.write_text(_WRAPPER)
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        out = Path(scratch) / "callgrind.out"
        server = Nodecert(
            Path(scratch) / "home",
            workers=1,
            users=4,
            executable=str(wrapper),
            extra_env={
                **env,
                "BENCH_NODECERT_EXE": executable,
                "BENCH_CALLGRIND_OUT": str(out),
            },
        )
        server.start(timeout=600)
        try:
            variants = tuple(
                (
                    {"Authorization": f"Bearer {cred.token}"},
                    Nodecert.generate_body(cred.node, csr_pem=make_csr(cred.user, cred.node)),
                )
                for cred in server.credentials
            )
            assert server.service is not None
            assert server.service.proc is not None
            pid = server.service.proc.pid
            spec = issuance_spec(
                server, variants, concurrency=concurrency, requests=requests, max_seconds=1200.0
            )
            run_in_subprocess(dataclasses.replace(spec, max_requests=warmup))
            # Each dump writes the counts since the last one and starts them again at zero.
            subprocess.run(
                ["callgrind_control", "--dump", str(pid)], check=True, capture_output=True
            )
            result = run_in_subprocess(spec)
            if result.errors or result.ok != requests:
                raise SetupError(f"{result.errors} errors {result.error_kinds}\n{server.tail()}")
            subprocess.run(
                ["callgrind_control", "--dump", str(pid)], check=True, capture_output=True
            )
        finally:
            server.stop()
        # The second dump of the server process (callgrind.out.PID.2) is the window.
        windows = [
            p for p in Path(scratch).iterdir() if re.fullmatch(r"callgrind\.out\.\d+\.2", p.name)
        ]
        if len(windows) != 1:
            raise SetupError(f"expected one window dump, found {sorted(p.name for p in windows)}")
        if keep is not None:
            shutil.copyfile(windows[0], keep)
        return _summary(windows[0]) / requests


def _default_env(executable: str) -> dict[str, str]:
    """``NODECERT_METRICS_FLUSH_S=50`` for a build that knows the setting (see above)."""
    python = Path(executable).with_name("python")
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import dataclasses, nodecert.core.config as c;"
            " print('metrics_flush_s' in {f.name for f in dataclasses.fields(c.Settings)})",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return {"NODECERT_METRICS_FLUSH_S": "50"} if probe.stdout.strip() == "True" else {}


def main(argv: list[str] | None = None) -> int:
    """Count each build once (or ``--rounds`` times) and print instructions per certificate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="append", help="NAME=PATH of a nodecert executable")
    parser.add_argument("--requests", type=int, default=200, help="counted issuances (200)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--keep",
        type=Path,
        help="a directory to keep each window's dump in (NAME.ROUND.callgrind), for"
        " callgrind_annotate",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME:VAR=VALUE, an environment variable for build NAME (NAME: alone, none)",
    )
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    builds = [tuple(b.split("=", 1)) for b in args.build or [f"HEAD={REPO}/.venv/bin/nodecert"]]
    envs = {name: _default_env(path) for name, path in builds}
    for spec in args.env:
        name, _, assignment = spec.partition(":")
        if name not in envs:
            parser.error(f"--env {spec}: no build named {name!r}")
        if not assignment:
            envs[name] = {}
        elif "=" not in assignment:
            parser.error(f"--env {spec}: expected NAME:VAR=VALUE")
        else:
            variable, _, value = assignment.partition("=")
            envs[name][variable] = value
    figures: dict[str, list[float]] = {name: [] for name, _ in builds}
    for round_ in range(1, args.rounds + 1):
        for name, path in builds:
            per_cert = count(
                path,
                requests=args.requests,
                concurrency=args.concurrency,
                warmup=args.warmup,
                env=envs[name],
                keep=None if args.keep is None else args.keep / f"{name}.{round_}.callgrind",
            )
            figures[name].append(per_cert)
            print(f"round {round_} {name:10} {per_cert / 1e6:7.3f} M instructions per certificate")
    if len(builds) > 1:
        first = min(figures[builds[0][0]])
        for name, _ in builds[1:]:
            print(f"{name}: {min(figures[name]) / first - 1:+.1%} against {builds[0][0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
