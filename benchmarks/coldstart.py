"""AWS Lambda cold start: a fresh process handling its first event, against a moto server.

Both processes run the Lambda code package exactly as ``deploy/build.sh`` makes it (the
lock's wheels, boto3 included, a copy of ``src/nodecert``, bytecode compiled by the build),
built for this interpreter into a temporary directory, on ``python -S`` with
``PYTHONPATH`` naming the package and nothing else: no virtualenv, no ``site``, no
``__pycache__`` written (``/var/task`` is read-only on Lambda), so that neither the dev
checkout's bytecode cache nor the test virtualenv's ``.pth`` files count for or against it.

What is timed, from the parent, as whole processes (spawn → exit, ``time.perf_counter``):

- **handler**: ``python -c "<import lambda_handler; handle one recorded event>"``, the REST
  (v1) ``POST /generate-cert`` event of ``tests/events`` (authorizer claims, so no token
  check), wired as ``deploy/template.yaml`` wires the function (``NODECERT_CA=acmpca``,
  ``NODECERT_STORE=dynamodb``) with botocore pointed at a ``moto.server.ThreadedMotoServer``
  on 127.0.0.1 through ``AWS_ENDPOINT_URL``, and ``AWS_LAMBDA_FUNCTION_NAME`` set as the
  Lambda runtime sets it (so the handler module wires the service on import, in what is
  Lambda's init phase). The process includes interpreter start, imports, wiring (two
  botocore clients' service models and endpoint rules, the CA description) and the whole
  issuance: this is a cold start with SnapStart off;
- **floor**: ``python -c "import boto3, cryptography.x509"``, the least any such function
  pays, from the same package.

Both end with ``os._exit`` once their work is done (the handler's reply printed, the floor's
imports made), so neither pays the interpreter's finalization: a Lambda function never
exits on a request's path (the runtime keeps the process between invocations, and Lambda
ends it at shutdown without running it), while finalizing was 100-250 ms of the handler
process here (freeing botocore's models), more than the floor's.

The handler process also measures, in itself, the time it spent waiting on others:
botocore's HTTP send (``URLLib3Session.send``, wrapped before nodecert is imported: every
AWS call, moto's answer on loopback included) and ``time.sleep`` (the wait before the first
``GetCertificate``, :mod:`nodecert.backends.acmpca.polling`). Two figures come of it, both
over the floor:

- the **function's own cold start** (the judged one): the process's wall time less what
  that same process spent in those sends and sleeps. moto's Python server (which signs
  synchronously and reloads its CA key on every ``IssueCertificate``) and the wait that an
  asynchronous CA calls for are not the function's; PCA's and DynamoDB's real latency
  needs a real account;
- the **raw** cold start: nothing subtracted, reported next to it.

The two processes are interleaved, ``repetitions`` times each; each ratio is the median of
the rounds' ratios (a handler process over the floor process right after it). The CPU time
of both (user + system, from ``getrusage``) is reported too: a busy machine inflates it
much less than wall time. The child also prints wall-clock stamps (after its imports,
after the handler returned), so the report can split the handler's time into start +
imports and the first event.

One more process of each round is not timed from outside: **restore**, the SnapStart path.
The init phase runs, then the runtime hooks of :mod:`nodecert.aws.lifecycle` around a
snapshot (``before_snapshot``, then ``after_restore``, as Lambda calls them), then the
first event: the time from the restore hook's start to the handler's return is what a
restored environment pays on top of Lambda's own restore (which only AWS can measure),
medians over ``repetitions``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ColdStart", "build_package", "import_breakdown", "measure_cold_start", "moto_aws"]

ROOT = Path(__file__).resolve().parents[1]
EVENT = ROOT / "tests" / "events" / "rest_generate_cert.json"
REGION = "eu-west-1"
FLOOR = "import boto3, cryptography.x509"
# Both timed processes end with os._exit once their work is done (see the module docstring).
FLOOR_CODE = f"{FLOOR}\nimport os\nos._exit(0)"
# The handler process, with the time spent in AWS calls (botocore's HTTP send: moto's
# answers on loopback) and in waits (the poll before GetCertificate) summed in the process
# itself. Wrapped before nodecert is imported, so that the backend's default ``sleep`` is
# the wrapper (botocore.httpsession is imported by the wiring anyway).
HANDLER_CODE = """\
import json, os, sys, time
import botocore.httpsession
spent = {"aws": 0.0, "calls": 0, "wait": 0.0}
send, sleep = botocore.httpsession.URLLib3Session.send, time.sleep
def timed_send(self, request):
    began = time.perf_counter()
    try:
        return send(self, request)
    finally:
        spent["aws"] += time.perf_counter() - began
        spent["calls"] += 1
def timed_sleep(seconds):
    began = time.perf_counter()
    try:
        sleep(seconds)
    finally:
        spent["wait"] += time.perf_counter() - began
botocore.httpsession.URLLib3Session.send = timed_send
time.sleep = timed_sleep
from nodecert.aws.handler import lambda_handler
imported = time.time()
event = json.loads(sys.argv[1])
response = lambda_handler(event, None)
print(json.dumps({**spent, "imported": imported, "handled": time.time(),
                  "status": response["statusCode"]}), flush=True)
os._exit(0)
"""
# SnapStart: init phase (on import), the hooks Lambda runs around a snapshot, first event.
RESTORE_CODE = """\
import json, sys, time
from nodecert.aws.handler import application, lambda_handler
from nodecert.aws.lifecycle import after_restore, before_snapshot
service = application().service
before_snapshot(service)
restored = time.perf_counter()
after_restore(service)
response = lambda_handler(json.loads(sys.argv[1]), None)
print(json.dumps({"ms": (time.perf_counter() - restored) * 1000,
                  "status": response["statusCode"]}))
"""


@dataclass(frozen=True)
class ColdStart:
    """Medians in milliseconds over ``repetitions`` processes of each kind.

    ``own_ms`` is the median, over the handler processes, of each one's wall time less
    what that same process spent in AWS calls and in the poll wait (``aws_ms`` and
    ``wait_ms`` are the medians of those). The ratios are medians of each round's ratio
    (a handler process over the floor process right after it), so that the machine's load
    drifting between rounds moves both sides of each ratio alike. ``handler_cpu_ms`` and
    ``floor_cpu_ms`` are the processes' CPU time (user + system), which a busy machine
    inflates much less than their wall time; the handler's includes botocore's own work
    in the sends.
    """

    floor_ms: float
    handler_ms: float
    import_ms: float
    first_event_ms: float
    repetitions: int
    ratio: float
    own_ratio: float
    imports: tuple[str, ...] = ()
    aws_ms: float = 0.0
    aws_calls: int = 0
    wait_ms: float = 0.0
    own_ms: float = 0.0
    restore_ms: float = 0.0
    handler_cpu_ms: float = 0.0
    floor_cpu_ms: float = 0.0


def build_package(directory: Path, *, tree: Path = ROOT) -> Path:
    """The Lambda code package, as ``deploy/build.sh`` makes it, for this interpreter.

    Args:
        directory: Where to build it (in ``lambda/``).
        tree: The checkout whose ``deploy/build.sh`` and ``src/nodecert`` are built (another
            commit's, to compare two builds).

    Raises:
        RuntimeError: the build failed.
    """
    out = directory / "lambda"
    done = subprocess.run(
        ["sh", str(tree / "deploy" / "build.sh")],
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "LAMBDA_OUT": str(out),
            "LAMBDA_PYTHON": f"{sys.version_info.major}.{sys.version_info.minor}",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"deploy/build.sh failed: {done.stderr.strip()[-800:]}")
    return out


def _aws_env(endpoint: str, package: Path) -> dict[str, str]:
    """This process's environment without AWS, nodecert or Python settings, plus dummy
    credentials and the package as the only import path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "NODECERT_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        PYTHONPATH=str(package),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_ENDPOINT_URL=endpoint,
        # Exactly what a cold Lambda container has: no bytecode cache beyond the package's.
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@contextlib.contextmanager
def moto_aws() -> Iterator[str]:
    """A moto server on a free loopback port (stopped on exit); yields its URL."""
    from moto.server import ThreadedMotoServer

    # One access-log line per AWS call on our stderr would bury the harness's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _active_ca(pca: Any) -> str:
    """A root CA in moto with its self-signed certificate installed (as in the console)."""
    arn = str(
        pca.create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "RSA_2048",
                "SigningAlgorithm": "SHA256WITHRSA",
                "Subject": {"Organization": "nodecert", "CommonName": "nodecert bench root"},
            },
            CertificateAuthorityType="ROOT",
            UsageMode="SHORT_LIVED_CERTIFICATE",
        )["CertificateAuthorityArn"]
    )
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
        Validity={"Type": "YEARS", "Value": 10},
    )["CertificateArn"]
    pem = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=issued)["Certificate"]
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=pem.encode()
    )
    return arn


def _function_env(endpoint: str, home: Path, package: Path) -> dict[str, str]:
    """The function's environment (deploy/template.yaml), with a CA and tables in moto."""
    from nodecert.store.dynamodb.store import create_tables

    suffix = uuid.uuid4().hex[:8]
    nodes, certificates = f"nodes-{suffix}", f"certificates-{suffix}"
    limits = f"limits-{suffix}"
    dynamodb = _client("dynamodb", endpoint)
    create_tables(dynamodb, nodes_table=nodes, certificates_table=certificates, limits_table=limits)
    # The recorded event asks for alice's node-1.
    dynamodb.put_item(
        TableName=nodes,
        Item={
            "nodeId": {"S": "node-1"},
            "userId": {"S": "alice"},
            "createdAt": {"S": "2025-03-01T12:00:00.000000Z"},
        },
    )
    env = _aws_env(endpoint, package)
    env.update(
        NODECERT_HOME=str(home),
        NODECERT_CA="acmpca",
        NODECERT_STORE="dynamodb",
        NODECERT_ACMPCA_CA_ARN=_active_ca(_client("acm-pca", endpoint)),
        NODECERT_AWS_REGION=REGION,
        NODECERT_DYNAMODB_NODES_TABLE=nodes,
        NODECERT_DYNAMODB_CERTIFICATES_TABLE=certificates,
        NODECERT_DYNAMODB_LIMITS_TABLE=limits,
        NODECERT_OIDC_ISSUER="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        NODECERT_OIDC_AUDIENCE="4example0clientid",
        NODECERT_TRUST_DOMAIN="nodecert.example",
        NODECERT_MAX_VALIDITY_DAYS="7",
        # Set by the Lambda runtime: the handler wires in the init phase, on import.
        AWS_LAMBDA_FUNCTION_NAME="nodecert-issuer",
        # Many certificates for one (user, node): the bench is not about quotas.
        NODECERT_QUOTA_PER_MINUTE="0",
        NODECERT_MAX_ACTIVE_PER_NODE="0",
    )
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, str, float]:
    """Run one process; (start epoch, wall seconds, stdout, CPU seconds).

    Raises:
        RuntimeError: it failed.
    """
    epoch, began = time.time(), time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
    )
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return epoch, took, proc.stdout, cpu


def measure_cold_start(
    *, repetitions: int = 7, timeout: float = 60.0, tree: Path = ROOT
) -> ColdStart:
    """Build the package (from ``tree``), then time ``repetitions`` handler and floor
    processes, interleaved.

    Raises:
        RuntimeError: the build or a process failed, or the handler did not answer 201.
    """
    event = json.loads(EVENT.read_text())
    floors, handlers, imports, firsts, restores = [], [], [], [], []
    aws: list[float] = []
    waits: list[float] = []
    owns: list[float] = []
    ratios: list[float] = []
    own_ratios: list[float] = []
    handler_cpus: list[float] = []
    floor_cpus: list[float] = []
    calls = 0
    python = [sys.executable, "-S"]  # Only the package on the path (see the docstring).

    def handler_event() -> str:
        # A new idempotency key each time: every process really issues a certificate.
        event["headers"]["Idempotency-Key"] = f"cold-{uuid.uuid4().hex[:12]}"
        return json.dumps(event)

    def answer(out: str) -> dict[str, Any]:
        stamps: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if stamps["status"] != 201:
            raise RuntimeError(f"the handler answered {stamps['status']}, not 201")
        return stamps

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nodecert-cold-")))
        package = build_package(tmp, tree=tree)
        endpoint = stack.enter_context(moto_aws())
        (tmp / "home").mkdir()
        env = _function_env(endpoint, tmp / "home", package)
        for i in range(repetitions + 1):
            argv = [*python, "-c", HANDLER_CODE, handler_event()]
            epoch, took, out, handler_cpu = _run(argv, env, timeout)
            stamps = answer(out)
            _, floor, _, floor_cpu = _run([*python, "-c", FLOOR_CODE], env, timeout)
            _, _, out, _ = _run([*python, "-c", RESTORE_CODE, handler_event()], env, timeout)
            restored = answer(out)
            if i == 0:
                continue  # The first round warms the page cache (a container image is warm too).
            handlers.append(took * 1000)
            floors.append(floor * 1000)
            imports.append((stamps["imported"] - epoch) * 1000)
            firsts.append((stamps["handled"] - stamps["imported"]) * 1000)
            restores.append(restored["ms"])
            aws.append(stamps["aws"] * 1000)
            waits.append(stamps["wait"] * 1000)
            own = took - stamps["aws"] - stamps["wait"]
            owns.append(own * 1000)
            ratios.append(took / floor)
            own_ratios.append(own / floor)
            handler_cpus.append(handler_cpu * 1000)
            floor_cpus.append(floor_cpu * 1000)
            calls = int(stamps["calls"])
        importtime = subprocess.run(
            [*python, "-X", "importtime", "-c", HANDLER_CODE, handler_event()],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )
    return ColdStart(
        floor_ms=round(statistics.median(floors), 1),
        handler_ms=round(statistics.median(handlers), 1),
        import_ms=round(statistics.median(imports), 1),
        first_event_ms=round(statistics.median(firsts), 1),
        repetitions=repetitions,
        ratio=round(statistics.median(ratios), 3),
        own_ratio=round(statistics.median(own_ratios), 3),
        imports=import_breakdown(importtime.stderr),
        aws_ms=round(statistics.median(aws), 1),
        aws_calls=calls,
        wait_ms=round(statistics.median(waits), 1),
        own_ms=round(statistics.median(owns), 1),
        restore_ms=round(statistics.median(restores), 1),
        handler_cpu_ms=round(statistics.median(handler_cpus), 1),
        floor_cpu_ms=round(statistics.median(floor_cpus), 1),
    )


def import_breakdown(stderr: str, top: int = 8) -> tuple[str, ...]:
    """The ``top`` costliest third-party imports in ``python -X importtime`` output.

    Each is a module outside ``nodecert`` imported straight from a nodecert module, or at
    the top level (``boto3``, imported lazily at wiring time), with its cumulative time and
    its importer: what to make lazy, and where.
    """
    entries: list[tuple[int, str, int]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.split("|")
        with contextlib.suppress(ValueError):
            depth = (len(name) - len(name.lstrip()) - 1) // 2
            entries.append((depth, name.strip(), int(cumulative)))
    # importtime prints children before their parent: reversed, a parent comes first.
    found: dict[str, tuple[int, str]] = {}
    stack: list[tuple[int, str]] = []
    for depth, name, micros in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        stack.append((depth, name))
        outside = name.split(".")[0] != "nodecert"
        direct = not parent or parent.startswith("nodecert")
        if outside and direct and (name not in found or found[name][0] < micros):
            found[name] = (micros, parent or "top level")
    ranked = sorted(found.items(), key=lambda item: item[1][0], reverse=True)[:top]
    return tuple(f"{name} {micros / 1000:.0f} ms ({by})" for name, (micros, by) in ranked)


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/coldstart.py``: the cold start alone, printed (nothing written)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=7, help="processes of each kind")
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="the checkout to build (another commit's)"
    )
    args = parser.parse_args(argv)
    cold = measure_cold_start(repetitions=args.repetitions, tree=args.tree)
    print(
        f"function's own cold start (SnapStart off): {cold.own_ratio:.2f}x the floor:"
        f" {cold.own_ms:.0f} ms (the handler process less its {cold.aws_ms:.0f} ms in"
        f" {cold.aws_calls} AWS calls answered by moto and {cold.wait_ms:.0f} ms in the"
        f" poll wait), floor {cold.floor_ms:.0f} ms (each its own median)\n"
        f"raw cold start, nothing subtracted: {cold.ratio:.2f}x the floor: handler"
        f" {cold.handler_ms:.0f} ms (spawn + imports + init {cold.import_ms:.0f} ms, first"
        f" event {cold.first_event_ms:.0f} ms)\n"
        f"SnapStart restore path: {cold.restore_ms:.0f} ms (after_restore + first event)\n"
        f"CPU time (user + system): handler process {cold.handler_cpu_ms:.0f} ms, floor"
        f" {cold.floor_cpu_ms:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
