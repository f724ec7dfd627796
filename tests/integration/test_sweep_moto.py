"""The scheduled revocation sweep on moto (ACM PCA + DynamoDB in server mode).

A sweep killed at any point is finished by the next run; a revocation the CA refuses (a
disabled CA), a malformed outbox item or ledger row does not hold up the rest; the run
stops cleanly when its time is nearly up and says so; the outbox is read page by page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from nodecert.aws import sweep
from nodecert.bootstrap import build_service, settings_from_environment
from nodecert.core.values import RevocationReason
from nodecert.store.dynamodb.store import create_tables
from tests.integration.test_acmpca_moto import create_active_ca
from tests.kit import issue


@dataclass
class Stack:
    service: Any
    tables: dict[str, str]
    pca: Any
    ca_arn: str

    @property
    def authority(self) -> Any:
        return self.service.authority

    @property
    def administration(self) -> Any:
        return self.service.administration


class Killed(BaseException):
    """The process dying at this point (not an Exception: nothing catches it)."""


@pytest.fixture
def service(aws_client, moto_endpoint, unique, monkeypatch, tmp_path):
    pca = aws_client("acm-pca")
    ca_arn = create_active_ca(pca)
    tables = {"nodes": f"n-{unique}", "certificates": f"c-{unique}", "limits": f"l-{unique}"}
    create_tables(
        aws_client("dynamodb"),
        nodes_table=tables["nodes"],
        certificates_table=tables["certificates"],
        limits_table=tables["limits"],
    )
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "NODECERT_HOME": str(tmp_path / "home"),
        "NODECERT_CA": "acmpca",
        "NODECERT_STORE": "dynamodb",
        "NODECERT_ACMPCA_CA_ARN": ca_arn,
        "NODECERT_AWS_REGION": "eu-west-1",
        "NODECERT_DYNAMODB_NODES_TABLE": tables["nodes"],
        "NODECERT_DYNAMODB_CERTIFICATES_TABLE": tables["certificates"],
        "NODECERT_DYNAMODB_LIMITS_TABLE": tables["limits"],
        "NODECERT_OIDC_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X",
        "NODECERT_OIDC_AUDIENCE": "client",
        "NODECERT_TRUST_DOMAIN": "nodecert.example",
        "NODECERT_KEY_POOL_SIZE": "0",
    }.items():
        monkeypatch.setenv(name, value)
    built = build_service(settings_from_environment())
    sweep._outbox.cache_clear()
    monkeypatch.setattr(sweep, "_outbox", lambda: built.administration)
    yield Stack(built, tables, pca, ca_arn)
    built.close()


def _queue(service, count: int, *, node: str = "n1") -> list[str]:
    """``count`` certificates revoked in the ledger, their CA revocations queued."""
    serials = []
    for index in range(count):
        cert = issue(service.authority, "alice", f"{node}-{index}", admin=service.administration)
        serials.append(format(cert.certificate.serial_number, "x"))
    rows = [row.serial for row in service.administration.ledger.find(user_id="alice")]
    service.administration.outbox.revoke_and_queue(
        rows, reason=RevocationReason.KEY_COMPROMISE, at=service.authority.clock()
    )
    return rows


def _revoked_at_ca(service) -> set[str]:
    from moto.acmpca.models import acmpca_backends

    ca = acmpca_backends["123456789012"]["eu-west-1"].describe_certificate_authority(service.ca_arn)
    return {serial.replace(":", "").lower().lstrip("0") for serial in ca.revoked_certificates}


def _bare(serial: str) -> str:
    return serial.replace(":", "").lower().lstrip("0")


class Clock:
    """A Lambda context whose remaining time is ``looks``, one per look, then the last."""

    def __init__(self, *looks: int) -> None:
        self.looks = list(looks)

    def get_remaining_time_in_millis(self) -> int:
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]


def test_a_sweep_killed_between_the_ca_and_the_outbox_is_finished_next_run(service, monkeypatch):
    serials = _queue(service, 3)
    outbox = service.administration.outbox
    sent = outbox.revocation_sent
    calls = []

    def dies_after_the_ca(serial: str) -> None:
        calls.append(serial)
        if len(calls) == 2:
            raise Killed  # The CA revoked it; the outbox item is still there.
        sent(serial)

    monkeypatch.setattr(outbox, "revocation_sent", dies_after_the_ca)
    with pytest.raises(Killed):
        sweep.sweep_handler({}, None)
    monkeypatch.setattr(outbox, "revocation_sent", sent)
    assert outbox.count_pending_revocations() == 2

    result = sweep.sweep_handler({}, None)

    assert result["pending"] == 0 and result["stopped"] == "empty"
    assert {_bare(s) for s in serials} <= _revoked_at_ca(service)


def test_a_revoke_all_killed_half_way_is_finished_by_the_sweep(service, monkeypatch):
    for index in range(3):
        issue(service.authority, "alice", f"k-{index}", admin=service.administration)
    rows = [row.serial for row in service.administration.ledger.find(user_id="alice")]
    outbox = service.administration.outbox
    done = []
    revoke_one = outbox._revoke_one

    def dies_after_one(serial, **kwargs):
        if done:
            raise Killed  # The sweep# item is written, one row of three is revoked.
        done.append(serial)
        return revoke_one(serial, **kwargs)

    monkeypatch.setattr(outbox, "_revoke_one", dies_after_one)
    with pytest.raises(Killed):
        outbox.revoke_and_queue(
            rows, reason=RevocationReason.SUPERSEDED, at=service.authority.clock()
        )
    monkeypatch.setattr(outbox, "_revoke_one", revoke_one)

    result = sweep.sweep_handler({}, None)

    assert result == {"pending": 0, "batches": 1, "failed": 0, "stopped": "empty"}
    statuses = {row.status.value for row in service.administration.ledger.find(user_id="alice")}
    assert statuses == {"revoked"}
    assert {_bare(s) for s in rows} <= _revoked_at_ca(service)


def test_one_poisoned_revocation_does_not_stop_the_rest(service, aws_client, caplog):
    serials = _queue(service, 4)
    client = aws_client("dynamodb")
    limits = service.tables["limits"]
    # A revocation for a CA that has since been disabled, queued first (oldest).
    other = create_active_ca(service.pca)
    service.pca.update_certificate_authority(CertificateAuthorityArn=other, Status="DISABLED")
    client.put_item(
        TableName=limits,
        Item={
            "key": {"S": "revoke#0a"},
            "serial": {"S": "0a"},
            "reason": {"S": "keyCompromise"},
            "issuer": {"S": other},
            "queuedAt": {"S": "2000-01-01T00:00:00.000000Z"},
        },
    )
    # Malformed items: no reason; a sweep naming no serials.
    client.put_item(TableName=limits, Item={"key": {"S": "revoke#0b"}, "serial": {"S": "0b"}})
    client.put_item(TableName=limits, Item={"key": {"S": "sweep#broken"}})

    with caplog.at_level(logging.WARNING):
        result = sweep.sweep_handler({}, None)

    assert result["pending"] == 2  # The disabled CA's and the malformed one stay queued.
    assert result["failed"] == 1 and result["stopped"] == "no-progress"
    assert {_bare(s) for s in serials} <= _revoked_at_ca(service)
    assert "0a" in caplog.text and "revoke#0b" in caplog.text and "sweep#broken" in caplog.text
    assert "still pending" in caplog.text


def test_the_sweep_stops_when_time_is_nearly_up_and_the_next_run_goes_on(
    service, monkeypatch, caplog
):
    _queue(service, 5)
    monkeypatch.setattr(sweep, "BATCH", 2)
    # Ten minutes at the start (the CA calls' budget), too little after the first batch.
    context = Clock(sweep.SAFETY_MS + 600_000, sweep.SAFETY_MS - 1)

    result = sweep.sweep_handler({}, context)

    assert result["stopped"] == "time" and result["pending"] == 3 and result["batches"] == 1
    assert "stopped (time)" in caplog.text
    assert sweep.sweep_handler({}, None) == {
        "pending": 0,
        "batches": 2,
        "failed": 0,
        "stopped": "empty",
    }


def test_the_outbox_is_read_page_by_page(service, monkeypatch):
    serials = _queue(service, 5)
    outbox = service.administration.outbox
    outbox._page = {"Limit": 2}  # Pages of two items: LastEvaluatedKey is followed.
    monkeypatch.setattr(sweep, "BATCH", 2)
    assert outbox.count_pending_revocations() == 5

    result = sweep.sweep_handler({}, None)

    assert result == {"pending": 0, "batches": 3, "failed": 0, "stopped": "empty"}
    assert {_bare(s) for s in serials} <= _revoked_at_ca(service)
