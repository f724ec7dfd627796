"""``make soak``: mixed load at a steady rate against ``nodecert serve``, for minutes.

Issue 6, item 5. It starts ``nodecert serve`` (2 workers, a temporary ``NODECERT_HOME``,
quotas relaxed through the environment, as the output says), registers ``--users`` users
with one node each through the CLI, then sends ``--rate`` requests per second for
``--minutes`` minutes (open loop: a request is due every 1/rate s whether or not the
previous ones have answered), in this mix:

    60% POST /generate-cert EC P-256        10% GET /v1/certificates?nodeId=
    10% POST /generate-cert RSA-2048         5% POST /v1/certificates/{serial}/revoke
    10% POST /generate-cert with a P-256 CSR 5% POST /v1/authorize (loopback) or GET /v1/ca

Every ``--sample-seconds`` it samples the server's processes (master and workers): VmRSS
from ``/proc/<pid>/status`` and the number of open descriptors in ``/proc/<pid>/fd``.

Pass criteria, all required (exit status 1 otherwise):

- no request failed (errors are counted by status or exception);
- RSS of all server processes together: last sample within +10% of the first sample
  after ``--warmup-minutes``;
- open descriptors flat: the last sample no higher than the first after the warm-up
  (+2 of slack for a connection being opened or closed as the sample is taken);
- the ledger: every serial answered with a 201 is a row of the SQLite file, and every
  serial revoked with a 200 is marked revoked there.

The figures go to ``benchmarks/results/soak.md``; a summary is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import queue
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

if not __package__:  # Run as a script: import ``benchmarks`` from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks.load import percentile
from benchmarks.nodecert_server import Credential, Nodecert
from benchmarks.run import make_csr
from benchmarks.services import SetupError

RESULTS = Path(__file__).resolve().parent / "results" / "soak.md"
# The mix: (operation, weight in percent).
MIX = (
    ("ec", 60),
    ("rsa", 10),
    ("csr", 10),
    ("list", 10),
    ("revoke", 5),
    ("authorize-or-ca", 5),
)
RELAXED = {
    # Quotas would turn a steady load from few users into 429s: relaxed, not removed (the
    # rate limiter's bucket is still read and written on every issuance).
    "NODECERT_QUOTA_PER_MINUTE": "1000000",
    "NODECERT_QUOTA_BURST": "1000000",
    "NODECERT_MAX_ACTIVE_PER_NODE": "0",
}
RSS_GROWTH_MAX = 0.10
FD_SLACK = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (10)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (20)")
    parser.add_argument("--users", type=int, default=16, help="users, one node each (16)")
    parser.add_argument("--workers", type=int, default=2, help="NODECERT_WORKERS (2)")
    parser.add_argument("--clients", type=int, default=8, help="client connections (8)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="sampling period")
    parser.add_argument(
        "--warmup-minutes", type=float, default=1.0, help="not judged for RSS/fd growth (1)"
    )
    parser.add_argument("--seed", type=int, default=6, help="random seed of the mix")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown report path")
    args = parser.parse_args(argv)
    if args.minutes <= args.warmup_minutes:
        parser.error("--minutes must be longer than --warmup-minutes")
    if args.rate <= 0 or args.users < 1 or args.clients < 1:
        parser.error("--rate, --users and --clients must be positive")
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


# -- the server's processes -----------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc/<pid>/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 if it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (0 if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass(frozen=True)
class Sample:
    """One look at the server's processes."""

    at_s: float
    pids: tuple[int, ...]
    rss_kib: tuple[int, ...]
    fds: tuple[int, ...]
    requests: int

    @property
    def total_rss_kib(self) -> int:
        return sum(self.rss_kib)

    @property
    def total_fds(self) -> int:
        return sum(self.fds)


def sample(root: int, started: float, requests: int) -> Sample:
    """RSS and descriptors of ``root`` and its children, now."""
    pids = tuple(sorted(process_tree(root)))
    return Sample(
        at_s=round(time.monotonic() - started, 1),
        pids=pids,
        rss_kib=tuple(rss_kib(p) for p in pids),
        fds=tuple(fd_count(p) for p in pids),
        requests=requests,
    )


# -- the load -------------------------------------------------------------------------------


@dataclass
class Issued:
    """A certificate the soak got (kept for revocation and the ledger check)."""

    serial: str
    credential: Credential


@dataclass
class Tally:
    """What the clients did, shared between threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    issued: list[Issued] = field(default_factory=list)
    revocable: list[Issued] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    late: int = 0

    @property
    def total(self) -> int:
        return sum(self.done.values())


class Soak:
    """The clients: ``clients`` threads, each with a kept-alive connection, fed by a clock."""

    def __init__(self, server: Nodecert, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.tally = Tally()
        self.random = random.Random(args.seed)
        self.jobs: queue.Queue[str | None] = queue.Queue()
        self.csrs = {c.user: make_csr(c.user, c.node) for c in server.credentials}
        # One certificate per user that is never revoked, for /v1/authorize (allowed).
        self.anchors: dict[str, str] = {}
        self.stopping = threading.Event()

    # One request of each kind: (method, path, body, headers, expected status).

    def _request(self, op: str) -> tuple[str, str, bytes, dict[str, str], int, Credential]:
        cred = self.random.choice(self.server.credentials)
        auth = {"Authorization": f"Bearer {cred.token}", "Content-Type": "application/json"}
        if op in ("ec", "rsa"):
            key_type = "ec-p256" if op == "ec" else "rsa-2048"
            body = Nodecert.generate_body(cred.node, key_type=key_type)
            return "POST", "/generate-cert", body, auth, 201, cred
        if op == "csr":
            body = Nodecert.generate_body(cred.node, csr_pem=self.csrs[cred.user])
            return "POST", "/generate-cert", body, auth, 201, cred
        if op == "list":
            path = "/v1/certificates?" + urllib.parse.urlencode({"nodeId": cred.node})
            return "GET", path, b"", auth, 200, cred
        if op == "revoke":
            with self.tally.lock:
                victim = self.tally.revocable.pop() if self.tally.revocable else None
            if victim is not None:
                cred = victim.credential
                auth["Authorization"] = f"Bearer {cred.token}"
                path = f"/v1/certificates/{victim.serial}/revoke"
                return "POST", path, b'{"reason": "superseded"}', auth, 200, cred
            op = "authorize-or-ca"  # Nothing issued yet: fall through.
        if self.random.random() < 0.5 and cred.user in self.anchors:
            body = json.dumps({"certificate": self.anchors[cred.user], "nodeId": cred.node})
            headers = {"Content-Type": "application/json"}
            return "POST", "/v1/authorize", body.encode(), headers, 200, cred
        return "GET", "/v1/ca", b"", {}, 200, cred

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        while True:
            op = self.jobs.get()
            if op is None:
                conn.close()
                return
            method, path, body, headers, expected, cred = self._request(op)
            kind = path.split("?")[0].rsplit("/", 1)[-1] if op == "revoke" else op
            began = time.perf_counter()
            try:
                conn.request(method, path, body or None, headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                with self.tally.lock:
                    self.tally.done[op] += 1
                    self.tally.errors[f"{op}: {type(exc).__name__}"] += 1
                continue
            took = (time.perf_counter() - began) * 1000
            with self.tally.lock:
                self.tally.done[op] += 1
                self.tally.latencies.setdefault(op, []).append(took)
                if status != expected:
                    self.tally.errors[f"{op}: http {status}"] += 1
                    if len(self.tally.errors) < 20:
                        print(f"  {method} {path} -> {status}: {data[:200]!r}", flush=True)
                    continue
                if status == 201:
                    serial = json.loads(data)["serialNumber"]
                    issued = Issued(serial, cred)
                    self.tally.issued.append(issued)
                    self.tally.revocable.append(issued)
                elif kind == "revoke":
                    self.tally.revoked.append(path.split("/")[3])

    def anchor(self) -> None:
        """Issue the never-revoked certificate of each user (counted like the others)."""
        for cred in self.server.credentials:
            body = Nodecert.generate_body(cred.node, key_type="ec-p256")
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            try:
                headers = {
                    "Authorization": f"Bearer {cred.token}",
                    "Content-Type": "application/json",
                }
                conn.request("POST", "/generate-cert", body, headers)
                response = conn.getresponse()
                data = json.loads(response.read())
            finally:
                conn.close()
            if response.status != 201:
                raise SetupError(f"anchor certificate for {cred.user}: HTTP {response.status}")
            self.anchors[cred.user] = data["certificate"]
            self.tally.issued.append(Issued(data["serialNumber"], cred))

    def run(self, seconds: float, on_tick: threading.Event) -> None:
        """Feed one job every 1/rate s for ``seconds``; the clients answer them."""
        threads = [
            threading.Thread(target=self._client, name=f"soak-{i}", daemon=True)
            for i in range(self.args.clients)
        ]
        for thread in threads:
            thread.start()
        ops = [op for op, weight in MIX for _ in range(weight)]
        period = 1.0 / self.args.rate
        start = time.monotonic()
        due = start
        try:
            while due < start + seconds and not self.stopping.is_set():
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                elif now - due > 1.0:
                    with self.tally.lock:
                        self.tally.late += 1  # More than 1 s behind: the server is not keeping up.
                if self.jobs.qsize() > self.args.clients * 4:
                    with self.tally.lock:
                        self.tally.late += 1
                self.jobs.put(self.random.choice(ops))
                due += period
        finally:
            for _ in threads:
                self.jobs.put(None)
            for thread in threads:
                thread.join(60)
            on_tick.set()


# -- the ledger -----------------------------------------------------------------------------


def check_ledger(database: Path, issued: list[Issued], revoked: list[str]) -> tuple[int, int, int]:
    """(rows in the file, issued serials missing from it, revoked serials not marked)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        rows = dict(db.execute("SELECT serial, status FROM certificates").fetchall())
    finally:
        db.close()
    missing = sum(1 for item in issued if item.serial not in rows)
    unmarked = sum(1 for serial in revoked if rows.get(serial) != "revoked")
    return len(rows), missing, unmarked


# -- the report -----------------------------------------------------------------------------


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def render(
    args: argparse.Namespace,
    started: datetime.datetime,
    took: float,
    tally: Tally,
    samples: list[Sample],
    judged: dict[str, tuple[bool, str]],
    ledger: tuple[int, int, int],
) -> str:
    """The Markdown report."""
    out = ["# nodecert soak", ""]
    out += [
        f"- **date**: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- **command**: `benchmarks/soak.py {' '.join(args.argv)}`",
        f"- **load**: {args.rate:g} req/s for {args.minutes:g} min, open loop, "
        f"{args.clients} kept-alive connections, {args.users} users with one node each",
        f"- **server**: `nodecert serve`, {args.workers} workers, temporary NODECERT_HOME, "
        "quotas relaxed: " + ", ".join(f"{k}={v}" for k, v in RELAXED.items()),
        f"- **machine**: {os.cpu_count()} cores; load average at the end "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"- **took**: {took:.0f} s",
        "",
        "## Verdict",
        "",
        "| criterion | met | figure |",
        "|---|---|---|",
    ]
    for name, (ok, figure) in judged.items():
        out.append(f"| {name} | {'✅' if ok else '❌'} | {figure} |")
    out += ["", "## Requests", "", "| operation | share | n | errors | p50 ms | p99 ms |"]
    out.append("|---|---|---|---|---|---|")
    weights = dict(MIX)
    for op, _ in MIX:
        lat = sorted(tally.latencies.get(op, []))
        errors = sum(n for k, n in tally.errors.items() if k.startswith(f"{op}:"))
        out.append(
            f"| {op} | {weights[op]}% | {tally.done[op]} | {errors} | "
            f"{percentile(lat, 0.5):.1f} | {percentile(lat, 0.99):.1f} |"
        )
    kinds = ", ".join(f"{k}: {n}" for k, n in tally.errors.items())
    out += [
        "",
        f"Total {tally.total} requests, {sum(tally.errors.values())} errors"
        + (f" ({kinds})" if kinds else "")
        + f"; {tally.late} ticks behind schedule. Issued {len(tally.issued)} certificates "
        f"(the {len(tally.issued) - sum(tally.done[op] for op in ('ec', 'rsa', 'csr'))} "
        f"never-revoked anchors for /v1/authorize included), revoked {len(tally.revoked)}.",
        "`list` asks for the node's first page (the 100 newest); the store reads only that"
        " page, however long the ledger grows.",
        "",
        "## Server processes (sum over master and workers)",
        "",
        "| t s | requests | RSS MiB | RSS per process MiB | fds | fds per process |",
        "|---|---|---|---|---|---|",
    ]
    for s in samples:
        out.append(
            f"| {s.at_s:g} | {s.requests} | {_mib(s.total_rss_kib)} | "
            f"{' / '.join(_mib(r) for r in s.rss_kib)} | {s.total_fds} | "
            f"{' / '.join(str(f) for f in s.fds)} |"
        )
    rows, missing, unmarked = ledger
    out += [
        "",
        "## Ledger",
        "",
        f"{rows} rows in the SQLite file; {len(tally.issued)} serials answered 201, "
        f"{missing} of them missing; {len(tally.revoked)} revoked with a 200, {unmarked} of "
        "them not marked revoked.",
    ]
    return "\n".join(out) + "\n"


def judge(
    args: argparse.Namespace, tally: Tally, samples: list[Sample], ledger: tuple[int, int, int]
) -> dict[str, tuple[bool, str]]:
    """Each pass criterion: (met, the figure)."""
    warm = [s for s in samples if s.at_s >= args.warmup_minutes * 60]
    first, last = (warm[0], warm[-1]) if len(warm) >= 2 else (samples[0], samples[-1])
    growth = (last.total_rss_kib - first.total_rss_kib) / max(1, first.total_rss_kib)
    errors = sum(tally.errors.values())
    same_pids = len({s.pids for s in samples}) == 1
    _, missing, unmarked = ledger
    return {
        "0 errors": (errors == 0 and tally.total > 0, f"{errors} of {tally.total} requests"),
        "RSS growth < 10% after warm-up": (
            growth < RSS_GROWTH_MAX,
            f"{growth:+.1%}: {_mib(first.total_rss_kib)} MiB at {first.at_s:g} s → "
            f"{_mib(last.total_rss_kib)} MiB at {last.at_s:g} s",
        ),
        "open fds flat": (
            last.total_fds <= first.total_fds + FD_SLACK,
            f"{first.total_fds} at {first.at_s:g} s → {last.total_fds} at {last.at_s:g} s "
            f"(min {min(s.total_fds for s in warm or samples)}, "
            f"max {max(s.total_fds for s in warm or samples)})",
        ),
        "same server processes throughout": (
            same_pids,
            f"{len(samples[0].pids)} processes" + ("" if same_pids else ", some replaced"),
        ),
        "ledger: every 201 recorded, every revoke marked": (
            missing == 0 and unmarked == 0,
            f"{missing} missing, {unmarked} unmarked",
        ),
    }


class SoakServer(Nodecert):
    """``Nodecert`` whose dev tokens outlive the soak."""

    lifetime_s = 3600

    def provision(self) -> None:
        """Register one node per user and mint each a token valid for the whole soak."""
        self.credentials = []
        for i in range(1, self.users + 1):
            user, node = f"soak-user-{i}", f"soak-node-{i}"
            self.cli("nodes", "add", node, "--owner", user)
            out = self.cli("dev-token", user, "--lifetime", str(self.lifetime_s))
            token = out.strip().splitlines()[-1].strip()
            if token.count(".") != 2:
                raise SetupError(f"`nodecert dev-token {user}` printed no JWT")
            self.credentials.append(Credential(user, node, token))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 if every criterion is met, 1 if not, 2 if it could not run."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = datetime.datetime.now(datetime.UTC)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="nodecert-soak-") as tmp:
        server = SoakServer(Path(tmp) / "home", workers=args.workers, users=args.users)
        server.lifetime_s = int(seconds + 1800)
        server.extra_env = dict(RELAXED)
        print(
            f"soak: nodecert serve, {args.workers} workers, {args.users} users; quotas relaxed "
            "via env: " + " ".join(f"{k}={v}" for k, v in RELAXED.items()),
            flush=True,
        )
        try:
            server.start(timeout=120)
        except SetupError as exc:
            print(f"soak: nodecert did not start: {exc}", file=sys.stderr)
            return 2
        try:
            proc = server.service.proc if server.service is not None else None
            if proc is None:
                raise SetupError("nodecert serve: no process after start")
            root = proc.pid
            soak = Soak(server, args)
            soak.anchor()
            print(
                f"soak: {args.rate:g} req/s for {args.minutes:g} min, sampling every "
                f"{args.sample_seconds:g} s",
                flush=True,
            )
            clock0 = time.monotonic()
            samples = [sample(root, clock0, 0)]
            finished = threading.Event()
            driver = threading.Thread(target=soak.run, args=(seconds, finished), daemon=True)
            driver.start()
            try:
                while not finished.wait(args.sample_seconds):
                    samples.append(sample(root, clock0, soak.tally.total))
                    s = samples[-1]
                    print(
                        f"  t={s.at_s:6.0f} s  requests {s.requests:6}  errors "
                        f"{sum(soak.tally.errors.values()):3}  RSS {_mib(s.total_rss_kib)} MiB"
                        f"  fds {s.total_fds}",
                        flush=True,
                    )
            except KeyboardInterrupt:
                soak.stopping.set()
                driver.join(60)
                print("soak: interrupted; no report written", file=sys.stderr)
                return 130
            driver.join()
            samples.append(sample(root, clock0, soak.tally.total))
        finally:
            log_tail = server.tail()
            server.stop()
        ledger = check_ledger(server.home / "nodecert.db", soak.tally.issued, soak.tally.revoked)
        took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        judged = judge(args, soak.tally, samples, ledger)
        report = render(args, started, took, soak.tally, samples, judged, ledger)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    ok = all(met for met, _ in judged.values())
    print(f"soak: wrote {args.output}")
    for name, (met, figure) in judged.items():
        print(f"  {'PASS' if met else 'FAIL'}  {name}: {figure}")
    if not ok and log_tail:
        print("server log (end):\n" + log_tail)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
