"""Hooks for the figures that later benchmarks add to the same report.

Each hook is a function ``hook(context) -> None`` that measures something and calls
``context.report.add_row(section, name, value, goal, met)``. ``run.py`` calls every hook in
:data:`HOOKS` after the load scenarios, with nodecert still up; a hook that raises is
reported as a row with its error, and the run goes on.

The three below are the extra figures of issue 5: the Lambda cold start
(:mod:`benchmarks.coldstart`), the ACM PCA path overhead (:mod:`benchmarks.fakepca`) and
the authorizer's decision latency. None needs the servers of ``run.py``; ``run.py
--only-extras`` runs them alone (about a minute).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cfssl_server import CFSSL
from benchmarks.nodecert_server import Nodecert
from benchmarks.results import Goal, Report

EVENTS = Path(__file__).resolve().parents[1] / "tests" / "events"

__all__ = ["HOOKS", "BenchContext", "Hook", "hook", "run_hooks"]


@dataclass(frozen=True)
class BenchContext:
    """What a hook may use.

    Attributes:
        args: the parsed command line of ``run.py`` (``args.quick`` for a smoke run).
        workdir: a temporary directory of this run, deleted at its end.
        report: where to add rows.
        nodecert: the running server, or None when it could not start.
        cfssl: None: cfssl is stopped after its runs (kept for hooks that start their own).
    """

    args: argparse.Namespace
    workdir: Path
    report: Report
    nodecert: Nodecert | None = None
    cfssl: CFSSL | None = None


Hook = Callable[[BenchContext], None]

HOOKS: list[Hook] = []


def hook(function: Hook) -> Hook:
    """Register ``function`` to run after the load scenarios (a decorator)."""
    HOOKS.append(function)
    return function


def run_hooks(context: BenchContext) -> None:
    """Run every hook; a failing hook becomes a row that says why."""
    for function in HOOKS:
        try:
            function(context)
        except Exception as exc:  # One broken hook must not lose the whole report.
            context.report.add_row(
                "hooks", function.__name__, None, note=f"failed: {type(exc).__name__}: {exc}"
            )


@hook
def lambda_cold_start(context: BenchContext) -> None:
    """AWS Lambda: a fresh process handling its first ``/generate-cert``, against the floor.

    See :mod:`benchmarks.coldstart`: both are whole processes timed from spawn to exit,
    interleaved, median of several; the handler talks to a moto server on loopback.
    """
    from benchmarks.coldstart import measure_cold_start

    cold = measure_cold_start(repetitions=3 if context.args.quick else 7)
    goal = Goal(1.5, higher_is_better=False)
    row = context.report.add_row(
        "AWS Lambda",
        "cold start (SnapStart off), the function's own: first handled event less its AWS"
        " calls and poll wait / `import boto3, cryptography.x509`",
        cold.own_ratio,
        goal,
        note=(
            f"median over {cold.repetitions} rounds of a fresh handler process over the floor"
            f" process right after it, both from the package deploy/build.sh makes (bytecode"
            f" included, python -S). Each figure below is its own median over the rounds, so"
            f" they need not add up to the ratio: handler {cold.handler_ms:.0f} ms less,"
            f" measured in that"
            f" same process, its"
            f" {cold.aws_ms:.0f} ms in {cold.aws_calls} AWS calls (botocore's HTTP send,"
            f" answered by moto on loopback) and {cold.wait_ms:.0f} ms in the wait before"
            f" the first GetCertificate: {cold.own_ms:.0f} ms, over the floor's"
            f" {cold.floor_ms:.0f} ms. moto's Python server and the wait an asynchronous CA"
            " calls for are not the function; a real cold start pays PCA's and DynamoDB's"
            " own latency instead, which only a real account measures. CPU time (user +"
            f" system, less inflated by a busy machine): handler {cold.handler_cpu_ms:.0f} ms,"
            f" floor {cold.floor_cpu_ms:.0f} ms. REST v1 POST /generate-cert (EC P-256);"
            " both processes end with os._exit when done (a Lambda function never runs the"
            " interpreter's finalization on a request's path)"
        ),
    )
    context.report.add_row(
        "AWS Lambda",
        "cold start (SnapStart off), raw: first handled event against moto, nothing"
        " subtracted / floor",
        cold.ratio,
        note=(
            f"{cold.handler_ms:.0f} / {cold.floor_ms:.0f} ms (spawn + imports + init-phase"
            f" wiring {cold.import_ms:.0f} ms, first event {cold.first_event_ms:.0f} ms),"
            " moto's answers and the poll wait included: for reading the row above"
        ),
    )
    context.report.add_row(
        "AWS Lambda",
        "SnapStart restore path: after_restore hook + first handled event",
        cold.restore_ms,
        unit="ms",
        note=(
            f"median of {cold.repetitions}; init phase and before_snapshot first, in the same"
            " process; Lambda's own restore of the snapshot is not included (only AWS can"
            " measure it); moto on loopback over HTTP, so no TLS handshake to reopen"
        ),
    )
    print(
        f"  Lambda cold start: the function's own {cold.own_ratio:.2f}x the floor, raw"
        f" {cold.ratio:.2f}x ({row.note});"
        f" SnapStart restore path {cold.restore_ms:.0f} ms",
        flush=True,
    )
    if not row.met:
        context.report.add_note(
            "Lambda cold start over the goal; slowest top-level imports of the handler process"
            " (`python -X importtime`, cumulative; lazily imported ones included): "
            + ", ".join(cold.imports)
        )


@hook
def pca_path_overhead(context: BenchContext) -> None:
    """ACM PCA: the acmpca backend's own time per issuance, besides PCA's own delay.

    See :mod:`benchmarks.fakepca`: a real boto3 client against a loopback fake that
    answers RequestInProgressException for 300 ms after each IssueCertificate.
    """
    from benchmarks.fakepca import measure_pca_overhead

    result = measure_pca_overhead(delay=0.3, issues=10 if context.args.quick else 20)
    for name, value, goal in (
        ("median", result.p50_ms, None),
        ("p99", result.p99_ms, Goal(100.0, higher_is_better=False)),
    ):
        context.report.add_row(
            "ACM PCA",
            f"acmpca issue time minus PCA's {result.delay_ms:.0f} ms, {name}",
            value,
            goal,
            unit="ms",
            note=(
                f"{result.issues} EC P-256 issues, {result.polls_per_issue:g} GetCertificate"
                " calls each (polls back off 50, 100, 200 ms...: most of this is the wait"
                " past readiness); fake PCA on loopback (benchmarks/fakepca.py)"
            ),
        )
    print(
        f"  ACM PCA path overhead: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms",
        flush=True,
    )


@hook
def authorizer_decision_latency(context: BenchContext) -> None:
    """Authorizer: time to allow one REST ``REQUEST`` event from its client certificate.

    In process, warm: local CA and SQLite store wired by ``bootstrap.build_decider`` in a
    temporary home, one certificate issued for it, then the same recorded event (with that
    PEM) handled over and over; each call parses the PEM, checks the chain, and reads the
    ledger and the node directory.
    """
    result = measure_authorizer(context.workdir / "authorizer", calls=2000)
    for name, value, goal in (
        ("p50", result[0], None),
        ("p99", result[1], Goal(5.0, higher_is_better=False)),
    ):
        context.report.add_row(
            "authorizer",
            f"decision latency (Allow, warm) {name}",
            value,
            goal,
            unit="ms",
            note=f"{result[2]} calls after 200 warm-up, in process, SQLite + local CA",
        )
    print(f"  authorizer: p50 {result[0]:.3f} ms, p99 {result[1]:.3f} ms", flush=True)


def measure_authorizer(home: Path, *, calls: int, warmup: int = 200) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, calls) of ``authorizer.handle`` for an allowed certificate.

    Raises:
        RuntimeError: the decision was not an Allow.
    """
    import copy
    import json
    import time

    from benchmarks.load import percentile
    from nodecert.aws.authorizer import TargetSource, handle
    from nodecert.bootstrap import build_decider, build_service
    from nodecert.core.config import Settings
    from nodecert.core.values import Principal
    from nodecert.issuing.authority import IssueRequest

    settings = Settings(home=home, key_pool_size=0)
    service = build_service(settings)
    try:
        service.administration.put_node(Principal("admin", is_admin=True), "n1", "alice")
        issued = service.authority.issue(
            Principal("alice"), IssueRequest(node_id="n1", request_id="bench", key_type="ec-p256")
        )
    finally:
        service.close()
    text = (EVENTS / "authorizer_rest_request.json").read_text().replace("NODE_ID", "n1")
    event = json.loads(text)
    event["requestContext"]["identity"]["clientCert"]["clientCertPem"] = issued.certificate_pem
    decider, target = build_decider(settings), TargetSource(settings.authorizer_target)
    answer = handle(copy.deepcopy(event), decider, target)
    if answer["policyDocument"]["Statement"][0]["Effect"] != "Allow":
        raise RuntimeError(f"authorizer: expected Allow, got {answer.get('context')}")
    for _ in range(warmup):
        handle(event, decider, target)
    times = []
    clock = time.perf_counter
    for _ in range(calls):
        began = clock()
        handle(event, decider, target)
        times.append((clock() - began) * 1000)
    times.sort()
    return round(percentile(times, 0.5), 3), round(percentile(times, 0.99), 3), calls


@hook
def crl_build_and_cache(context: BenchContext) -> None:
    """The local CA's CRL with 100,000 revoked certificates: cold build, cached reply.

    See :mod:`benchmarks.crlbench`: in process, SQLite ledger on the run's directory.
    """
    from benchmarks.crlbench import measure_crl

    result = measure_crl(10_000 if context.args.quick else 100_000, workdir=context.workdir)
    note = f"{result.count:,} revoked, unexpired rows; CRL of {result.crl_bytes:,} bytes"
    context.report.add_row(
        "CRL",
        f"build (query, entries, sign) with {result.count:,} revoked",
        result.build_s,
        Goal(1.0, higher_is_better=False),
        unit="s",
        note=note,
    )
    context.report.add_row(
        "CRL",
        "cached reply (no revocation since), median of 50",
        result.cached_ms,
        Goal(5.0, higher_is_better=False),
        unit="ms",
        note=note,
    )
    print(
        f"  CRL: build {result.build_s:.2f} s, cached {result.cached_ms:.3f} ms"
        f" ({result.count:,} revoked)",
        flush=True,
    )


@hook
def signer_throughput(context: BenchContext) -> None:
    """The local CA's issuance rate with its key in a file and in SoftHSM2 (PKCS#11).

    See :mod:`benchmarks.signers`; run in a process of its own (SoftHSM2 reads its
    configuration once per process).
    """
    import subprocess
    import sys

    from benchmarks import signers

    if not signers.available():
        context.report.add_row("CA keys", "SoftHSM2", None, note="not installed (make deps)")
        return
    issues = "150" if context.args.quick else "400"
    done = subprocess.run(
        [sys.executable, str(Path(signers.__file__)), "--issues", issues],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    rates = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    for name, rate in rates.items():
        context.report.add_row(
            "CA keys",
            f"in-process issuance, issuing key in {name}",
            float(rate.split()[0].replace(",", "")),
            unit="certificates/s",
            note="EC P-256, one thread, best of 3 rounds (benchmarks/signers.py)",
        )
    print(f"  CA keys: {', '.join(f'{k} {v}' for k, v in rates.items())}", flush=True)
