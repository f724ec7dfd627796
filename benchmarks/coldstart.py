"""AWS Lambda cold start: a fresh process handling its first event, against a moto server.

What is timed, from the parent, as whole processes (spawn → exit, ``time.perf_counter``):

- **handler**: ``python -c "<import lambda_handler; handle one recorded event>"``, the REST
  (v1) ``POST /generate-cert`` event of ``tests/events`` (authorizer claims, so no token
  check), wired as ``deploy/template.yaml`` wires the function (``NODECERT_CA=acmpca``,
  ``NODECERT_STORE=dynamodb``) with botocore pointed at a ``moto.server.ThreadedMotoServer``
  on 127.0.0.1 through ``AWS_ENDPOINT_URL``, and ``AWS_LAMBDA_FUNCTION_NAME`` set as the
  Lambda runtime sets it (so the handler module wires the service on import, in what is
  Lambda's init phase). Nothing is subtracted: the process includes interpreter start,
  imports, wiring (three botocore clients' worth of models, the CA description) and the
  whole issuance (moto's answers included: ~7 loopback AWS calls, two of them the
  Idempotency-Key's claim);
- **floor**: ``python -c "import boto3, cryptography.x509"``, the least any such function
  pays.

The two are interleaved, ``repetitions`` times each, and the medians compared. The child also
prints wall-clock stamps (after its imports, after the handler returned), so the report
can split the handler's time into start + imports and the first event itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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

__all__ = ["ColdStart", "import_breakdown", "measure_cold_start", "moto_aws"]

ROOT = Path(__file__).resolve().parents[1]
EVENT = ROOT / "tests" / "events" / "rest_generate_cert.json"
REGION = "eu-west-1"
FLOOR_CODE = "import boto3, cryptography.x509"
HANDLER_CODE = """\
import json, sys, time
from nodecert.aws.handler import lambda_handler
imported = time.time()
event = json.loads(sys.argv[1])
response = lambda_handler(event, None)
print(json.dumps({"imported": imported, "handled": time.time(),
                  "status": response["statusCode"]}))
"""


@dataclass(frozen=True)
class ColdStart:
    """Medians in milliseconds over ``repetitions`` processes of each kind."""

    floor_ms: float
    handler_ms: float
    import_ms: float
    first_event_ms: float
    repetitions: int
    imports: tuple[str, ...] = ()

    @property
    def ratio(self) -> float:
        """Handler process over floor process."""
        return round(self.handler_ms / self.floor_ms, 3)


def _aws_env(endpoint: str) -> dict[str, str]:
    """This process's environment without AWS or nodecert settings, plus dummy credentials."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "NODECERT_")) and k != "PYTHONPATH"
    }
    env.update(
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


def _function_env(endpoint: str, home: Path) -> dict[str, str]:
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
    env = _aws_env(endpoint)
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


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, str]:
    """Run one process; (start epoch, wall seconds, stdout).

    Raises:
        RuntimeError: it failed.
    """
    epoch, began = time.time(), time.perf_counter()
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
    )
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return epoch, took, proc.stdout


def measure_cold_start(*, repetitions: int = 7, timeout: float = 60.0) -> ColdStart:
    """Time ``repetitions`` handler processes and as many floor processes, interleaved.

    Raises:
        RuntimeError: a process failed or the handler did not answer 201.
    """
    event = json.loads(EVENT.read_text())
    floors, handlers, imports, firsts = [], [], [], []
    with moto_aws() as endpoint, tempfile.TemporaryDirectory(prefix="nodecert-cold-") as tmp:
        env = _function_env(endpoint, Path(tmp))
        for i in range(repetitions + 1):
            # A new idempotency key each time: every process really issues a certificate.
            event["headers"]["Idempotency-Key"] = f"cold-{i}-{uuid.uuid4().hex[:8]}"
            argv = [sys.executable, "-c", HANDLER_CODE, json.dumps(event)]
            epoch, took, out = _run(argv, env, timeout)
            stamps = json.loads(out.strip().splitlines()[-1])
            if stamps["status"] != 201:
                raise RuntimeError(f"the handler answered {stamps['status']}, not 201")
            _, floor, _ = _run([sys.executable, "-c", FLOOR_CODE], env, timeout)
            if i == 0:
                continue  # The first pair warms the page cache (a container image is warm too).
            handlers.append(took * 1000)
            floors.append(floor * 1000)
            imports.append((stamps["imported"] - epoch) * 1000)
            firsts.append((stamps["handled"] - stamps["imported"]) * 1000)
        event["headers"]["Idempotency-Key"] = f"importtime-{uuid.uuid4().hex[:8]}"
        traced = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", HANDLER_CODE, json.dumps(event)],
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
        imports=import_breakdown(traced.stderr),
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
