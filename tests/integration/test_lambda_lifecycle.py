"""The Lambda execution environment: wiring in the init phase, SnapStart's snapshot/restore."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import time

import pytest

from nodecert.aws import lifecycle
from nodecert.bootstrap import build_service
from nodecert.core.keys import KeyType
from nodecert.support.awsclients import close_connections
from tests.rehearsal.package import lambda_package

from ..conftest import make_settings

CHILD = """
import json, time
began = time.perf_counter()
from nodecert.aws import handler
print(json.dumps({"wired": handler.application.cache_info().currsize,
                  "import_ms": (time.perf_counter() - began) * 1000}))
"""


@pytest.mark.parametrize(("on_lambda", "wired"), [(True, 1), (False, 0)])
def test_on_lambda_the_service_is_wired_in_the_init_phase(tmp_path, on_lambda, wired):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NODECERT_", "AWS_"))}
    env.update(NODECERT_HOME=str(tmp_path / "home"), NODECERT_KEY_POOL_SIZE="0")
    if on_lambda:
        env["AWS_LAMBDA_FUNCTION_NAME"] = "nodecert-issuer"
    child = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout)["wired"] == wired


# The handler module imported from the Lambda package (its bytecode compiled: compiling a
# module allocates too), counting the collections that start once the package's own
# __init__, which precedes the module's first line, has run.
COUNT_COLLECTIONS = """
import gc, json
import nodecert
started = []
gc.callbacks.append(lambda phase, info: started.append(phase) if phase == "start" else None)
from nodecert.aws import handler
collections = len(started)
print(json.dumps({"collections": collections, "enabled": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("on_lambda", [True, False])
def test_on_lambda_no_collection_runs_while_the_handler_imports_and_wires(tmp_path, on_lambda):
    env = {
        "PYTHONPATH": str(lambda_package()),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NODECERT_HOME": str(tmp_path / "home"),
        "NODECERT_KEY_POOL_SIZE": "0",
    }
    if on_lambda:
        env["AWS_LAMBDA_FUNCTION_NAME"] = "nodecert-issuer"
    child = subprocess.run(
        [sys.executable, "-S", "-c", COUNT_COLLECTIONS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)
    assert seen["enabled"]  # The collector runs again once the init phase is over.
    if on_lambda:
        assert seen["collections"] == 0
        assert seen["frozen"] > 10_000  # The modules and the wiring: never traversed again.
    else:
        # Elsewhere nothing is paused: the count above is not zero by construction.
        assert seen["collections"] > 0
        assert seen["frozen"] == 0


@pytest.fixture
def unfrozen():
    # init_phase freezes what exists: give this test process its collector back after.
    yield
    gc.unfreeze()
    gc.enable()


def test_a_wiring_failure_in_the_init_phase_is_logged_and_left_to_the_first_event(caplog, unfrozen):
    def broken():
        raise RuntimeError("no table")

    with caplog.at_level(logging.ERROR, logger="nodecert"):
        assert lifecycle.init_phase(broken) is None
    assert "could not be wired (RuntimeError)" in caplog.text
    assert gc.isenabled()  # Collected again, failure or not.


def test_the_init_phase_wires_without_the_cyclic_collector_and_freezes_what_it_made(unfrozen):
    gc.unfreeze()
    seen = []

    def wire():
        seen.append(gc.isenabled())
        models = [{"shape": [i]} for i in range(1000)]  # long-lived, as botocore's are
        seen.append(models)
        return None

    assert gc.isenabled()
    lifecycle.init_phase(wire)
    assert seen[0] is False
    assert gc.isenabled()
    # What the wiring made is in the permanent generation: no collection traverses it.
    assert gc.get_freeze_count() >= len(seen[1])
    collected = {id(o) for o in gc.get_objects()}  # generations 0-2, not the permanent one
    assert all(gc.is_tracked(m) and id(m) not in collected for m in seen[1])


def test_a_collector_switched_off_by_the_caller_stays_off_and_nothing_is_frozen(unfrozen):
    gc.unfreeze()
    gc.disable()
    lifecycle.init_phase(lambda: None)
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_prepare_describes_the_ca_once_so_the_first_issuance_does_not(
    aws_client, tmp_path, moto_endpoint
):
    from nodecert.backends.acmpca.backend import ACMPCABackend

    pca = aws_client("acm-pca")
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "lifecycle test"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    service = build_service(make_settings(tmp_path / "home"))
    backend = ACMPCABackend(pca, ca_arn=arn, organization="o", trust_domain="t.example")
    service.authority.ca = backend
    calls: list[str] = []
    pca.meta.events.register("before-call.acm-pca.*", lambda model, **_: calls.append(model.name))
    # moto's new CA is PENDING_CERTIFICATE, not ACTIVE: logged, not raised (the first
    # request will say so with a 503).
    lifecycle.prepare(service)
    assert calls == ["DescribeCertificateAuthority"]
    service.close()


def test_before_a_snapshot_and_after_a_restore_no_pooled_key_survives(tmp_path):
    service = build_service(make_settings(tmp_path / "home", key_pool_size=2))
    pool = service.key_pool
    pool(KeyType.RSA_2048)  # First use starts the filler; wait for the pool to fill.
    for _ in range(600):
        if pool.ready(KeyType.RSA_2048) == 2:
            break
        time.sleep(0.05)
    assert pool.ready(KeyType.RSA_2048) >= 1

    lifecycle.before_snapshot(service)
    assert pool.ready(KeyType.RSA_2048) == 0
    lifecycle.after_restore(service)
    assert pool.ready(KeyType.RSA_2048) == 0
    # A restored environment still hands out keys (generated inline), each new.
    assert pool(KeyType.RSA_2048).public_key() != pool(KeyType.RSA_2048).public_key()
    assert pool.ready(KeyType.RSA_2048) == 0
    service.close()


def test_closed_connections_are_reopened_by_the_next_call(aws_client):
    dynamodb = aws_client("dynamodb")
    dynamodb.list_tables()
    assert close_connections() >= 1
    dynamodb.list_tables()  # A new connection, no error.


def test_snapstart_hooks_run_as_the_runtime_runs_them(tmp_path, aws_client):
    """Registered with the real snapshot_restore_py; run in its order, as Lambda does."""
    import snapshot_restore_py

    service = build_service(make_settings(tmp_path / "home", key_pool_size=2))
    before = list(snapshot_restore_py._before_snapshot_registry)
    after = list(snapshot_restore_py._after_restore_registry)
    try:
        assert lifecycle.register_snapshot_hooks(service) is True
        new_before = snapshot_restore_py._before_snapshot_registry[len(before) :]
        new_after = snapshot_restore_py._after_restore_registry[len(after) :]
        assert [f for f, _, _ in new_before] == [lifecycle.before_snapshot]
        assert [f for f, _, _ in new_after] == [lifecycle.after_restore]
        pool = service.key_pool
        pool(KeyType.RSA_2048)  # Starts the filler: a key ready now would be in a snapshot.
        for _ in range(600):
            if pool.ready(KeyType.RSA_2048) >= 1:
                break
            time.sleep(0.05)
        assert pool.ready(KeyType.RSA_2048) >= 1
        dynamodb = aws_client("dynamodb")
        dynamodb.list_tables()
        # Before snapshot (the runtime runs these in reverse order of registration).
        for function, args, kwargs in reversed(new_before):
            function(*args, **kwargs)
        assert pool.ready(KeyType.RSA_2048) == 0
        time.sleep(0.2)  # The filler is stopped: nothing refills the pool behind our back.
        assert pool.ready(KeyType.RSA_2048) == 0
        # After restore, in order of registration.
        for function, args, kwargs in new_after:
            function(*args, **kwargs)
        assert pool.ready(KeyType.RSA_2048) == 0
        dynamodb.list_tables()  # A new connection after the restore.
    finally:
        snapshot_restore_py._before_snapshot_registry[:] = before
        snapshot_restore_py._after_restore_registry[:] = after
        service.close()


def test_without_the_lambda_runtime_no_snapshot_hooks_are_registered(tmp_path, monkeypatch):
    # snapshot_restore_py ships with the Lambda Python runtimes (and nodecert's dev extra);
    # elsewhere the import fails and nothing is registered.
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)
    service = build_service(make_settings(tmp_path / "home"))
    assert lifecycle.register_snapshot_hooks(service) is False
    service.close()
