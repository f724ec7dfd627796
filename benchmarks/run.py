"""``make bench``: nodecert against cfssl on loopback, written to results/latest.md.

One run, in this order, so that no server competes with another for the 2 cores:

1. calibrate the load generator against a trivial endpoint;
2. cfssl (Debian's ``golang-cfssl``, installed when missing) with a fresh EC P-256 CA:
   every scenario at every concurrency;
3. the in-process RSA-2048 keygen floor (one process per core, cfssl stopped);
4. nodecert (``nodecert serve``, 2 workers, temporary home): every scenario again;
5. the extra-figure hooks of ``extras.py`` and the goals below.

If nodecert cannot start, the report says why and carries cfssl's rows alone. Every load is
bounded in requests and seconds; every process started is stopped on the way out,
Ctrl-C and SIGTERM included. ``--quick`` is a ~30 s smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

if not __package__:  # Run as a script: import ``benchmarks`` from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import extras
from benchmarks.calibrate import calibrate
from benchmarks.cfssl_server import CFSSL, ensure_cfssl
from benchmarks.floor import FloorResult, rsa_keygen_floor
from benchmarks.load import LoadResult, LoadSpec, run_in_subprocess
from benchmarks.nodecert_server import Nodecert
from benchmarks.results import Goal, Report
from benchmarks.services import SetupError

RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"

# The goals of issue 5. Ratio figures are "nodecert/cfssl req/s" at the highest
# concurrency and "nodecert/floor"; RSA against cfssl has no goal of its own (None).
GOALS: dict[str, Goal | None] = {
    "ec-newcert": Goal(1.0),
    "ec-csr": Goal(1.0),
    "rsa-newcert": None,
    "rsa-floor": Goal(0.85),
    # p99 of RSA-2048 issuance at c=4 under moderate load (paced at half the keygen floor)
    # over the median time to make one RSA-2048 key.
    "rsa-paced-p99": Goal(2.0, higher_is_better=False),
    # The generator has its own process: it must stay far from saturating its core.
    "generator-cpu": Goal(0.5, higher_is_better=False),
    "keepalive-p50-ms": Goal(5.0, higher_is_better=False),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` changes the defaults of the sizing options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run")
    parser.add_argument("--seconds", type=float, help="wall-clock cap per load run (6; quick 1)")
    parser.add_argument("--requests", type=int, help="request cap per EC run (20000; quick 2000)")
    parser.add_argument("--rsa-requests", type=int, help="request cap per RSA run (2000; 300)")
    parser.add_argument("--floor-seconds", type=float, help="keygen floor time (6; quick 2)")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated (1,4,16)")
    parser.add_argument(
        "--scenarios", default="ec-newcert,ec-csr,rsa-newcert", help="comma-separated subset"
    )
    parser.add_argument("--engine", default="asyncio", choices=("asyncio", "threads"))
    parser.add_argument("--warmup", type=int, default=1, help="requests per connection first")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request grace, s")
    parser.add_argument("--workers", type=int, default=2, help="NODECERT_WORKERS")
    parser.add_argument("--key-pool-size", type=int, help="NODECERT_KEY_POOL_SIZE (default: unset)")
    parser.add_argument("--users", type=int, help="users (each with a node and token; 4)")
    parser.add_argument(
        "--nodecert-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra NODECERT_* setting for the service (repeatable)",
    )
    parser.add_argument(
        "--nodecert-bin", help="the nodecert command to bench (default: this venv's script)"
    )
    parser.add_argument("--no-cfssl", action="store_true", help="skip cfssl")
    parser.add_argument("--no-nodecert", action="store_true", help="skip nodecert")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get cfssl")
    parser.add_argument(
        "--only-extras",
        action="store_true",
        help="only the extra figures of extras.py (no servers, ~1 min; results/extras.md)",
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the extra figures (to compare two builds' throughput quickly)",
    )
    parser.add_argument("--output", type=Path, help="Markdown report path (results/latest.md)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    quick = args.quick
    defaults = {
        "seconds": 1.0 if quick else 6.0,
        "requests": 2000 if quick else 20000,
        "rsa_requests": 300 if quick else 2000,
        "floor_seconds": 2.0 if quick else 6.0,
        "users": 2 if quick else 4,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.output is None:
        args.output = RESULTS.with_name("extras.md") if args.only_extras else RESULTS
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for item in args.nodecert_env:
        if "=" not in item or not item.startswith("NODECERT_"):
            parser.error(f"--nodecert-env: expected NODECERT_NAME=VALUE, got {item!r}")
    return args


def make_csr(common_name: str, node: str) -> str:
    """A P-256 CSR (PEM), made once and signed over and over."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, node),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def machine_info(cfssl_version: str, *, measured: bool) -> dict[str, str]:
    """What the figures were measured on."""
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": f"{os.cpu_count()} ({cpu})",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "cryptography": f"{cryptography.__version__} ({backend.openssl_version_text()})",
        "cfssl": cfssl_version or "not available",
        "nodecert": Nodecert.version() + ("" if measured else " (not measured)"),
        "commit": commit or "unknown",
        "load average (1, 5, 15 min) at the end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


class Bench:
    """The load runs of one benchmark, against whichever servers are up."""

    def __init__(self, args: argparse.Namespace, report: Report) -> None:
        self.args = args
        self.report = report
        self.csr = make_csr("bench-user-1", "bench-node-1")

    def _load(self, port: int, path: str, scenario: str, **kwargs: object) -> LoadSpec:
        rsa = scenario.startswith("rsa")
        return LoadSpec(
            host="127.0.0.1",
            port=port,
            path=path,
            max_requests=self.args.rsa_requests if rsa else self.args.requests,
            max_seconds=self.args.seconds,
            warmup=self.args.warmup,
            timeout=self.args.timeout,
            engine=self.args.engine,
            **kwargs,  # type: ignore[arg-type]
        )

    def _run(self, scenario: str, server: str, spec: LoadSpec) -> LoadResult:
        result = run_in_subprocess(spec)
        self.report.add_load(scenario, server, result)
        errors = f"  errors {result.errors} {result.error_kinds}" if result.errors else ""
        print(
            f"  {scenario:11} {server:8} c={result.concurrency:<3} {result.rps:9.1f} req/s  "
            f"p50 {result.p50_ms:8.2f} ms  p99 {result.p99_ms:8.2f} ms  "
            f"n={result.requests:<6} gen CPU {result.cpu_share:4.0%}{errors}",
            flush=True,
        )
        return result

    def cfssl(self, server: CFSSL) -> None:
        """Every scenario against cfssl."""
        bodies = {
            "ec-newcert": ("/api/v1/cfssl/newcert", CFSSL.newcert_body("u", "n", "ecdsa", 256)),
            "ec-csr": ("/api/v1/cfssl/sign", CFSSL.sign_body(self.csr)),
            "rsa-newcert": ("/api/v1/cfssl/newcert", CFSSL.newcert_body("u", "n", "rsa", 2048)),
        }
        for scenario in self.args.scenarios:
            path, body = bodies[scenario]
            for c in self.args.concurrency:
                spec = self._load(
                    server.port,
                    path,
                    scenario,
                    body=body,
                    headers={"Content-Type": "application/json"},
                    expect_status=200,
                    expect_body=b'"success":true',
                    concurrency=c,
                )
                self._run(scenario, "cfssl", spec)

    def keepalive_probe(self, server: Nodecert) -> None:
        """``GET /healthz`` over one kept-alive connection: the floor of any request.

        A p50 near 40 ms here is Nagle's algorithm meeting the client's delayed ACK: the
        server's accepted sockets lack TCP_NODELAY (uvicorn ``--workers N`` binds its
        listener with ``proto=0``, so asyncio never sets it: Kludex/uvicorn#3149).
        """
        spec = LoadSpec(
            host="127.0.0.1",
            port=server.port,
            path="/healthz",
            method="GET",
            concurrency=1,
            max_requests=50,
            max_seconds=min(self.args.seconds, 2.5),
            warmup=self.args.warmup,
            timeout=self.args.timeout,
            engine=self.args.engine,
        )
        result = run_in_subprocess(spec)
        print(f"  keep-alive probe: GET /healthz p50 {result.p50_ms:.2f} ms", flush=True)
        self.report.add_row(
            "nodecert",
            "GET /healthz p50 on a keep-alive connection",
            result.p50_ms,
            GOALS["keepalive-p50-ms"],
            unit="ms",
            note=f"n={result.requests}, errors={result.errors}",
        )
        if result.p50_ms > 30:
            self.report.add_note(
                f"nodecert: every keep-alive request waits ~{result.p50_ms:.0f} ms (GET /healthz"
                " p50): Nagle + delayed ACK, TCP_NODELAY is not set on accepted sockets"
                " (uvicorn --workers N binds with proto=0: Kludex/uvicorn#3149); the nodecert"
                " figures above include that wait."
            )

    def nodecert(self, server: Nodecert) -> None:
        """Every scenario against nodecert; connections take the users in turn."""
        self.keepalive_probe(server)
        for scenario in self.args.scenarios:
            variants = []
            for cred in server.credentials:
                if scenario == "ec-csr":
                    # A CSR made for this user and node, in case the service checks it.
                    csr = self.csr if cred.user == "bench-user-1" else None
                    csr = csr or make_csr(cred.user, cred.node)
                    body = Nodecert.generate_body(cred.node, csr_pem=csr)
                else:
                    key_type = "rsa-2048" if scenario.startswith("rsa") else "ec-p256"
                    body = Nodecert.generate_body(cred.node, key_type=key_type)
                variants.append(({"Authorization": f"Bearer {cred.token}"}, body))
            for c in self.args.concurrency:
                spec = self._load(
                    server.port,
                    "/generate-cert",
                    scenario,
                    headers={"Content-Type": "application/json"},
                    variants=tuple(variants),
                    expect_status=201,
                    expect_body=b'"certificate"',
                    concurrency=c,
                )
                result = self._run(scenario, "nodecert", spec)
                self._note_quota(scenario, c, result)
            if scenario == "rsa-newcert":
                self.rsa_paced(server, tuple(variants))

    def rsa_paced(
        self, server: Nodecert, variants: tuple[tuple[dict[str, str], bytes], ...]
    ) -> None:
        """RSA-2048 at c=4 under moderate load: paced at half the keygen floor.

        The closed-loop runs above saturate the machine, so their latency is queueing.
        Here requests come on a schedule the machine can keep up with, after a pause that
        lets the key pool refill, and latency counts from each request's scheduled time.
        """
        floor = self.report.floor
        if floor is None or floor.keys_per_s <= 0:
            return
        time.sleep(min(5.0, 2 * self.args.seconds))  # The key pool refills meanwhile.
        spec = self._load(
            server.port,
            "/generate-cert",
            "rsa-newcert",
            headers={"Content-Type": "application/json"},
            variants=variants,
            expect_status=201,
            expect_body=b'"certificate"',
            concurrency=4,
            rate=round(floor.keys_per_s / 2, 2),
        )
        spec = dataclasses.replace(spec, max_seconds=2 * self.args.seconds)
        result = self._run("rsa-paced", "nodecert", spec)
        self._note_quota("rsa-paced", 4, result)
        ratio = round(result.p99_ms / floor.median_ms, 2) if floor.median_ms else None
        self.report.add_row(
            "nodecert vs floor",
            "rsa-newcert p99 at c=4, paced at half the floor / keygen median",
            ratio,
            GOALS["rsa-paced-p99"],
            note=(
                f"{spec.rate:g} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms,"
                f" keygen median {floor.median_ms:.1f} ms, n={result.requests},"
                f" errors={result.errors}"
            ),
        )

    def _note_quota(self, scenario: str, c: int, result: LoadResult) -> None:
        if any(kind.startswith("http 429") for kind in result.error_kinds):
            self.report.add_note(
                f"{scenario} c={c}: nodecert answered 429 (quota) to "
                f"{result.error_kinds['http 429']} requests, counted as errors; "
                "raise --users or lift the quota with --nodecert-env."
            )


def judge(report: Report, args: argparse.Namespace) -> None:
    """Add the goal rows for the figures measured here."""
    top = max(args.concurrency)
    for scenario in args.scenarios:
        ratio = report.ratio(scenario, top)
        report.add_row(
            "nodecert vs cfssl",
            f"{scenario} req/s ratio at c={top}",
            ratio,
            GOALS[scenario],
            note="" if ratio is not None else "one side not measured",
        )
    ours = report.find("rsa-newcert", "nodecert", top)
    if report.floor is not None and "rsa-newcert" in args.scenarios:
        value = round(ours.rps / report.floor.keys_per_s, 3) if ours else None
        report.add_row(
            "nodecert vs floor",
            f"rsa-newcert req/s / keygen floor at c={top}",
            value,
            GOALS["rsa-floor"],
            note="" if ours else "nodecert not measured",
        )
    if report.runs:
        report.add_row(
            "load generator",
            "highest CPU share in a run (of one core)",
            report.generator_cpu_max(),
            GOALS["generator-cpu"],
            note="the generator must not be the bottleneck",
        )


def keygen_floor(args: argparse.Namespace, report: Report) -> FloorResult:
    """Measure the RSA-2048 keygen floor; keep the highest so far in ``report``."""
    print(f"RSA-2048 keygen floor: 2 processes x {args.floor_seconds:g} s", flush=True)
    floor = rsa_keygen_floor(seconds=args.floor_seconds, processes=2)
    print(f"  {floor.keys_per_s} keys/s ({floor.keys} keys, CPU {floor.cpu_share:.0%})", flush=True)
    if report.floor is None or floor.keys_per_s > report.floor.keys_per_s:
        report.floor = floor
    return floor


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the report; 0 on success, 1 if nothing could be measured.

    A run that fails half-way still writes what it measured, marked incomplete; a run
    interrupted with Ctrl-C writes nothing (the previous report stays).
    """
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    report = Report()
    try:
        took = measure(args, report)
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped; no report written")
        return 130
    except Exception as exc:
        report.settings["mode"] += " — INCOMPLETE"
        report.add_note(f"run aborted: {type(exc).__name__}: {exc}")
        report.write(args.output)
        print(f"run aborted; wrote what was measured to {args.output}", file=sys.stderr)
        raise
    report.write(args.output)
    print(f"wrote {args.output} ({took:.0f} s)")
    return 0 if report.runs or (args.only_extras and report.rows) else 1


def only_extras(args: argparse.Namespace, report: Report) -> float:
    """Run the hooks of ``extras.py`` alone, with no server up; return the seconds taken."""
    started = datetime.datetime.now(datetime.UTC)
    report.title = "nodecert benchmark: extra figures"
    report.settings = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "extra figures only" + (" (quick)" if args.quick else ""),
        "command": "benchmarks/run.py " + " ".join(args.argv),
    }
    if os.getloadavg()[0] > 0.5:
        report.add_note(
            f"load average {os.getloadavg()[0]:.2f} at the start (concurrent work), "
            "so the figures are noisier than usual."
        )
    with tempfile.TemporaryDirectory(prefix="nodecert-bench-") as tmp:
        extras.run_hooks(extras.BenchContext(args, Path(tmp), report))
    report.machine = machine_info("", measured=True)
    took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    report.settings["took"] = f"{took:.0f} s"
    return took


def measure(args: argparse.Namespace, report: Report) -> float:
    """Start the servers, run every load, fill ``report``; return the seconds taken."""
    if args.only_extras:
        return only_extras(args, report)
    started = datetime.datetime.now(datetime.UTC)
    report.machine = machine_info("", measured=False)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        report.add_note(
            f"load average {load_before:.2f} at the start (recent or concurrent work), "
            "so the figures are noisier than usual."
        )
    report.settings = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick (smoke)" if args.quick else "full",
        "per run": f"≤ {args.seconds:g} s, ≤ {args.requests} requests "
        f"(RSA ≤ {args.rsa_requests}), {args.warmup} warm-up request(s) per connection",
        "load generator": f"{args.engine} engine, own process, keep-alive, loopback",
        "nodecert": f"{args.workers} workers, key pool "
        f"{args.key_pool_size if args.key_pool_size is not None else 'default'}, "
        f"{args.users} users" + (f", {' '.join(args.nodecert_env)}" if args.nodecert_env else ""),
        "command": "benchmarks/run.py " + " ".join(args.argv),
    }
    cfssl_version = ""
    with (
        tempfile.TemporaryDirectory(prefix="nodecert-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        print("calibrating the load generator against a trivial endpoint", flush=True)
        report.calibration = calibrate(
            engines=(args.engine,),
            concurrencies=tuple(args.concurrency),
            requests=20000,
            seconds=0.5 if args.quick else 1.0,
        )
        for r in report.calibration:
            print(
                f"  trivial c={r.concurrency:<3} {r.rps:9.0f} req/s  {r.cpu_us_per_request} us/req"
            )
        bench = Bench(args, report)

        cfssl: CFSSL | None = None
        if not args.no_cfssl:
            try:
                binary = ensure_cfssl(install=not args.no_install)
                (workdir / "cfssl").mkdir()
                cfssl = CFSSL(workdir / "cfssl", binary=binary)
                cfssl_version = cfssl.version()
                stack.callback(cfssl.stop)
                print(f"starting cfssl ({cfssl_version})", flush=True)
                cfssl.start()
            except SetupError as exc:
                print(f"cfssl unavailable: {exc}", file=sys.stderr, flush=True)
                report.add_note(f"cfssl unavailable: {exc}")
                cfssl = None
        if cfssl is not None:
            bench.cfssl(cfssl)
            # Stopped at once, so that nothing of it can run during the floor or nodecert.
            cfssl.stop()
            cfssl = None

        floors = []
        if "rsa-newcert" in args.scenarios:
            floors.append(keygen_floor(args, report))

        nodecert: Nodecert | None = None
        if not args.no_nodecert:
            extra = dict(item.split("=", 1) for item in args.nodecert_env)
            nodecert = Nodecert(
                workdir / "nodecert",
                workers=args.workers,
                key_pool_size=args.key_pool_size,
                users=args.users,
                extra_env=extra,
                executable=args.nodecert_bin,
            )
            stack.callback(nodecert.stop)
            try:
                print("starting nodecert serve", flush=True)
                nodecert.start()
            except SetupError as exc:
                message = f"nodecert unavailable, cfssl rows only: {exc}"
                print(message, file=sys.stderr, flush=True)
                report.add_note(message.replace("\n", " "))
                nodecert.stop()
                nodecert = None
        if nodecert is not None:
            try:
                bench.nodecert(nodecert)
            except RuntimeError as exc:
                report.add_note(f"nodecert run failed: {exc}; server log: {nodecert.tail()}")
                raise

        # The hooks run while the servers are up; the second floor runs with them stopped
        # (nodecert refills its RSA key pool in the background after the RSA runs).
        if not args.no_extras:
            extras.run_hooks(extras.BenchContext(args, workdir, report, nodecert, cfssl))
        measured = nodecert is not None
        stack.close()
        if floors:
            # RSA keygen time varies from key to key, and a shared host varies too.
            floors.append(keygen_floor(args, report))
            report.add_note(
                "RSA keygen floor, both measurements: "
                + ", ".join(f"{f.keys_per_s} keys/s (CPU {f.cpu_share:.0%})" for f in floors)
                + "; the higher one is used."
            )
        judge(report, args)
        report.machine = machine_info(cfssl_version, measured=measured)
        took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        report.settings["took"] = f"{took:.0f} s"
    return took


if __name__ == "__main__":
    raise SystemExit(main())
