"""SnapStart: nothing unique is made before the snapshot; the generators are reseeded after.

A SnapStart snapshot is taken after the init phase and copied into every environment
restored from it (https://docs.aws.amazon.com/lambda/latest/dg/snapstart-uniqueness.html).
``cryptography`` makes keys from its bundled OpenSSL's userspace generator, so the init phase
must neither make a key nor sign (which draws nonces and blinding from it), and the restore
hook must reseed it. The init phase is run as Lambda runs it: a fresh interpreter imports
the handler modules with ``AWS_LAMBDA_FUNCTION_NAME`` set, wiring the AWS shape (ACM PCA and
DynamoDB in a moto server) and describing the CA, while spies sit on every key-generation,
private-key and signing entry point of ``cryptography``, PyJWT and ``ssl.RAND_bytes``. The
same spies then see the first request after a restore make its key and CSR, so they do
catch what they look for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodecert.aws import lifecycle
from nodecert.bootstrap import build_service
from nodecert.store.dynamodb.store import create_tables
from tests.integration.test_acmpca_moto import create_active_ca

from ..conftest import make_settings

EVENTS = Path(__file__).resolve().parents[1] / "events"

CHILD = r"""
import functools, json, sys

CALLS = []


def spy(owner, name, label):
    raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    kind = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
    function = raw.__func__ if kind is not None else raw

    @functools.wraps(function)
    def spied(*args, **kwargs):
        CALLS.append(label)
        return function(*args, **kwargs)

    setattr(owner, name, kind(spied) if kind is not None else spied)


import ssl
import jwt.api_jws
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.serialization import pkcs12

for module, name in [(rsa, "generate_private_key"), (ec, "generate_private_key"),
                     (dsa, "generate_private_key"), (dsa, "generate_parameters"),
                     (dh, "generate_parameters"), (serialization, "load_pem_private_key"),
                     (serialization, "load_der_private_key"),
                     (serialization, "load_ssh_private_key"),
                     (pkcs12, "load_key_and_certificates"), (ssl, "RAND_bytes")]:
    spy(module, name, f"{module.__name__.rsplit('.', 1)[-1]}.{name}")
for cls in [ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey, x25519.X25519PrivateKey,
            x448.X448PrivateKey]:
    spy(cls, "generate", f"{cls.__name__}.generate")
for cls in [x509.CertificateBuilder, x509.CertificateSigningRequestBuilder,
            x509.CertificateRevocationListBuilder, ocsp.OCSPResponseBuilder,
            jwt.api_jws.PyJWS]:
    spy(cls, "sign" if cls is not jwt.api_jws.PyJWS else "encode", f"{cls.__name__}.sign")

# The init phase, as Lambda runs it: the handler modules imported (the issuer API wires the
# service and describes the CA here).
from nodecert.aws import authorizer, handler, sweep

during_init = list(CALLS)
wired = handler.application.cache_info().currsize

# A restore, then the first requests.
from nodecert.aws import lifecycle

lifecycle.after_restore(handler.application().service)
CALLS.clear()
events = sys.argv[1]
statuses = []
for name in ("rest_put_node_admin.json", "rest_generate_cert.json"):
    with open(f"{events}/{name}") as file:
        statuses.append(handler.lambda_handler(json.load(file), None)["statusCode"])
print(json.dumps({"wired": wired, "during_init": during_init, "statuses": statuses,
                  "on_request": CALLS}))
"""


@pytest.fixture
def lambda_environment(aws_client, moto_endpoint, unique, tmp_path):
    """The issuer function's environment, as deploy/template.yaml sets it, against moto."""
    ca_arn = create_active_ca(aws_client("acm-pca"))
    tables = {
        "nodes_table": f"nodes-{unique}",
        "certificates_table": f"certificates-{unique}",
        "limits_table": f"limits-{unique}",
        "outbox_table": f"outbox-{unique}",
    }
    create_tables(aws_client("dynamodb"), **tables)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODECERT_", "AWS_"))}
    env.update(
        AWS_LAMBDA_FUNCTION_NAME="nodecert-issuer",
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        NODECERT_HOME=str(tmp_path / "home"),
        NODECERT_CA="acmpca",
        NODECERT_STORE="dynamodb",
        NODECERT_ACMPCA_CA_ARN=ca_arn,
        NODECERT_AWS_REGION="eu-west-1",
        NODECERT_DYNAMODB_NODES_TABLE=tables["nodes_table"],
        NODECERT_DYNAMODB_CERTIFICATES_TABLE=tables["certificates_table"],
        NODECERT_DYNAMODB_LIMITS_TABLE=tables["limits_table"],
        NODECERT_DYNAMODB_OUTBOX_TABLE=tables["outbox_table"],
        NODECERT_OIDC_ISSUER="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        NODECERT_OIDC_AUDIENCE="4example0clientid",
        NODECERT_TRUST_DOMAIN="nodecert.local",
        NODECERT_MAX_VALIDITY_DAYS="7",
        NODECERT_KEY_POOL_SIZE="0",
    )
    return env


def test_the_init_phase_makes_no_key_and_signs_nothing(lambda_environment):
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(EVENTS)],
        env=lambda_environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["wired"] == 1  # The init phase did wire the service.
    assert report["during_init"] == []
    # The spies work: the first issuance after the restore made a key and signed a CSR.
    assert report["statuses"] == [200, 201]
    assert "ec.generate_private_key" in report["on_request"]
    assert "CertificateSigningRequestBuilder.sign" in report["on_request"]


def test_the_restore_hook_reseeds_both_openssl_generators_and_random(tmp_path, monkeypatch):
    from cryptography.hazmat.bindings.openssl.binding import Binding

    seeded: list[tuple[str, int, float]] = []
    lib = Binding().lib
    original = lib.RAND_add
    monkeypatch.setattr(
        lib,
        "RAND_add",
        lambda buf, num, randomness: (
            seeded.append(("cryptography", num, randomness)),
            original(buf, num, randomness),
        ),
    )
    monkeypatch.setattr(
        lifecycle.ssl,
        "RAND_add",
        lambda buf, randomness: seeded.append(("ssl", len(buf), randomness)),
    )
    random_seeds: list[object] = []
    monkeypatch.setattr(lifecycle.random, "seed", lambda a=None: random_seeds.append(a))
    service = build_service(make_settings(tmp_path / "home"))

    lifecycle.after_restore(service)

    assert sorted(name for name, _, _ in seeded) == ["cryptography", "ssl"]
    # At least 256 bits each, all of it counted as entropy, so OpenSSL reseeds at once.
    assert all(size >= 32 and randomness == size for _, size, randomness in seeded)
    assert random_seeds == [None]  # None: from os.urandom.
    assert lib.RAND_status() == 1
    service.close()


def test_without_cryptographys_bindings_the_restore_says_so_and_goes_on(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.bindings.openssl.binding", None)
    assert lifecycle.reseed_openssl() is False
    assert "cannot be reseeded" in caplog.text


# OpenSSL's generators, observed from outside: a DRBG seeds itself from the kernel on its
# first use through getentropy(3), which calls getrandom(2); CPython's own reads (hash seed,
# os.urandom, random's seed) call getrandom(2) directly. strace -k names the library above
# getentropy: libcrypto.so is the system OpenSSL behind Python's ssl; cryptography's OpenSSL
# is linked into its own extension module.
TRACE = ("strace", "-f", "-k", "-qq")  # Follow threads, with each call's stack, quietly.
MARKER_BYTES = 777  # os.urandom(777) marks the end of the init phase in the trace.
TRACED = f"""
import json, os, sys
from nodecert.aws import authorizer, handler, sweep
assert handler.application.cache_info().currsize == 1
os.urandom({MARKER_BYTES})
from nodecert.aws import lifecycle
lifecycle.after_restore(handler.application().service)
for name in ("rest_put_node_admin.json", "rest_generate_cert.json"):
    with open(f"{{sys.argv[1]}}/{{name}}") as file:
        assert handler.lambda_handler(json.load(file), None)["statusCode"] in (200, 201)
"""


def _seedings(trace: str) -> dict[str, list[str]]:
    """Who seeded an OpenSSL generator, before and after the marker.

    Returns:
        ``{"before": [...], "after": [...]}``, each entry ``"ssl"`` (the system OpenSSL
        behind Python's ssl) or ``"cryptography"`` (any other caller of getentropy).
    """
    found: dict[str, list[str]] = {"before": [], "after": []}
    phase = "before"
    lines = trace.splitlines()
    for index, line in enumerate(lines):
        if "getrandom(" not in line:
            continue
        stack = []
        for following in lines[index + 1 :]:
            if not following.lstrip().startswith(">"):
                break
            stack.append(following)
        if f", {MARKER_BYTES}," in line:
            phase = "after"
        elif any("getentropy" in frame for frame in stack):
            system = any("libcrypto.so" in frame or "libssl.so" in frame for frame in stack)
            found[phase].append("ssl" if system else "cryptography")
    assert phase == "after", "the marker is missing from the trace"
    return found


def test_cryptographys_openssl_generator_is_not_even_seeded_in_the_init_phase(
    lambda_environment, tmp_path
):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (make deps)")
    probe = subprocess.run(
        [*TRACE, "-e", "trace=getrandom", sys.executable, "-c", "import os; os.urandom(5)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0 or " > " not in probe.stderr:
        pytest.skip(f"strace cannot trace with stacks here: {probe.stderr[-200:]}")
    trace = tmp_path / "trace.txt"
    child = subprocess.run(
        [
            *TRACE,
            "-o",
            str(trace),
            "-e",
            "trace=getrandom",
            sys.executable,
            "-c",
            TRACED,
            str(EVENTS),
        ],
        env=lambda_environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == 0, child.stderr
    seedings = _seedings(trace.read_text())
    # Before the snapshot, cryptography's generator was never instantiated, so nothing
    # can have drawn from it. (Python's ssl generator was: botocore builds an SSLContext
    # when it makes a client, and SSL_CTX_new draws its ticket keys; hence ssl.RAND_add.)
    assert "cryptography" not in seedings["before"]
    # The probe sees it: after the restore, the reseed and the first key seed it.
    assert "cryptography" in seedings["after"]
