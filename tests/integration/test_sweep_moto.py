"""The scheduled revocation sweep on moto (ACM PCA + DynamoDB in server mode).

A sweep killed at any point is finished by the next run; a revocation the CA refuses (a
disabled CA), a malformed outbox item or ledger row does not hold up the rest; the run
stops cleanly when its time is nearly up and says so; the outbox is read page by page.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nodecert.aws import sweep
from nodecert.bootstrap import build_service, settings_from_environment
from nodecert.core.values import AuditQuery, RevocationReason
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
    tables = {
        "nodes": f"n-{unique}",
        "certificates": f"c-{unique}",
        "limits": f"l-{unique}",
        "outbox": f"o-{unique}",
    }
    create_tables(
        aws_client("dynamodb"),
        nodes_table=tables["nodes"],
        certificates_table=tables["certificates"],
        limits_table=tables["limits"],
        outbox_table=tables["outbox"],
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
        "NODECERT_DYNAMODB_OUTBOX_TABLE": tables["outbox"],
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
    outbox = service.tables["outbox"]
    # A revocation for a CA that has since been disabled, queued first (oldest).
    other = create_active_ca(service.pca)
    service.pca.update_certificate_authority(CertificateAuthorityArn=other, Status="DISABLED")
    client.put_item(
        TableName=outbox,
        Item={
            "queue": {"S": "revoke"},
            "id": {"S": "0a"},
            "position": {"S": "2000-01-01T00:00:00.000000Z#0a"},
            "reason": {"S": "keyCompromise"},
            "issuer": {"S": other},
            "queuedAt": {"S": "2000-01-01T00:00:00.000000Z"},
        },
    )
    # Malformed items: no reason; a sweep naming no serials.
    client.put_item(
        TableName=outbox,
        Item={
            "queue": {"S": "revoke"},
            "id": {"S": "0b"},
            "position": {"S": "2000-01-01T00:00:00.000001Z#0b"},
        },
    )
    client.put_item(TableName=outbox, Item={"queue": {"S": "sweep"}, "id": {"S": "broken"}})

    with caplog.at_level(logging.WARNING):
        result = sweep.sweep_handler({}, None)

    assert result["pending"] == 2  # The disabled CA's and the malformed one stay queued.
    assert result["failed"] == 1 and result["stopped"] == "no-progress"
    assert {_bare(s) for s in serials} <= _revoked_at_ca(service)
    assert "0a" in caplog.text and "revoke/0b" in caplog.text and "sweep/broken" in caplog.text
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


# The outbox's own table: read by consistent Query, never by a Scan of the limits table.


def _calls(service) -> list[tuple[str, str]]:
    """Every DynamoDB call the service's client makes from now on: (operation, table)."""
    seen: list[tuple[str, str]] = []
    client = service.administration.outbox._client

    def record(model, params, **_: Any) -> None:
        seen.append((model.name, params.get("TableName", "")))

    client.meta.events.register("provide-client-params.dynamodb", record)
    return seen


def test_a_run_reads_the_queue_by_consistent_query_and_scans_nothing_per_batch(
    service, monkeypatch
):
    _queue(service, 5)
    monkeypatch.setattr(sweep, "BATCH", 2)
    calls = _calls(service)
    sent: list[dict[str, Any]] = []
    service.administration.outbox._client.meta.events.register(
        "provide-client-params.dynamodb.Query", lambda params, **_: sent.append(params)
    )

    result = sweep.sweep_handler({}, None)

    assert result == {"pending": 0, "batches": 3, "failed": 0, "stopped": "empty"}
    # One look for the older layout in the whole run (the upgrade), none per batch.
    scans = [table for operation, table in calls if operation == "Scan"]
    assert scans == [service.tables["limits"]]
    queries = [table for operation, table in calls if operation == "Query"]
    assert set(queries) == {service.tables["outbox"]} and len(queries) == 3 * 3
    assert all(params["ConsistentRead"] for params in sent)
    assert {params.get("IndexName") for params in sent} == {"byTime", None}


def test_once_the_older_layout_stayed_empty_for_an_hour_nobody_scans_again(service):
    from nodecert.store.dynamodb.upgrade import QUIET

    _queue(service, 1)
    outbox = service.administration.outbox
    now = service.authority.clock()
    outbox.upgrade._clock = lambda: now
    assert sweep.sweep_handler({}, None)["pending"] == 0  # Looked, found nothing: marked.

    # A later process (a new container), within the hour: looks again.
    later = type(outbox.upgrade)(
        outbox._client,
        limits_table=service.tables["limits"],
        outbox_table=service.tables["outbox"],
        clock=lambda: now + QUIET / 2,
    )
    calls = _calls(service)
    assert later.move_if_due() == 0 and not later.done
    assert [operation for operation, _ in calls] == ["GetItem", "Scan"]

    # After the hour: one read of the marker, no scan, and never again in that process.
    calls.clear()
    later._clock, later._checked = (lambda: now + QUIET), None
    assert later.move_if_due() == 0 and later.done
    assert later.move_if_due() == 0
    assert [operation for operation, _ in calls] == ["GetItem"]


def _old_item(client, table: str, key: str, **attributes: str | list[str]) -> None:
    item: dict[str, Any] = {"key": {"S": key}}
    for name, value in attributes.items():
        item[name] = {"L": [{"S": v} for v in value]} if isinstance(value, list) else {"S": value}
    client.put_item(TableName=table, Item=item)


CHECK = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "outbox-upgrade-check.sh"


def _upgrade_check(service, moto_endpoint: str) -> str:
    """deploy/aws/outbox-upgrade-check.sh as docs/aws.md shows it, against moto (named by
    an argument, which every AWS CLI knows; AWS_ENDPOINT_URL only from 1.29 and 2.13)."""
    done = subprocess.run(
        ["sh", str(CHECK), "--endpoint-url", moto_endpoint],
        env={
            **{k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"},
            "LIMITS_TABLE": service.tables["limits"],
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def _older_layout(service, client) -> tuple[list[str], list[str]]:
    """What a stack deployed before the outbox table left in the limits table: two queued
    revocations, a revoke-all of bob's node cut short, and an audit entry (4 items).
    Returns the queued serials and the revoke-all's."""
    limits = service.tables["limits"]
    queued = _queue(service, 2)
    for serial in queued:  # Queued by the older version: in the limits table only.
        service.administration.outbox.revocation_sent(serial)
        _old_item(
            client,
            limits,
            f"revoke#{serial}",
            serial=serial,
            reason="keyCompromise",
            issuer=service.ca_arn,
            queuedAt="2026-12-01T08:00:00.000000Z",
        )
    # A revoke-all of bob's node the older version wrote down and did not finish.
    cut_short = []
    for index in range(2):
        cert = issue(service.authority, "bob", f"b-{index}", admin=service.administration)
        cut_short.append(format(cert.certificate.serial_number, "x"))
    _old_item(
        client,
        limits,
        "sweep#2026-12-01T08:00:00.000000Z#0f",
        serials=cut_short,
        reason="cessationOfOperation",
        at="2026-12-01T08:00:00.000000Z",
    )
    # An audit entry as the older version wrote it (before userId, nodeId and source).
    _old_item(
        client,
        limits,
        "audit#2026-11-30T23:59:59.000000Z#01",
        at="2026-11-30T23:59:59.000000Z",
        actor="ops",
        action="node.remove",
        target="n-old",
        detail="",
    )
    return queued, cut_short


def test_an_older_versions_queue_in_the_limits_table_is_moved_and_drained(
    service, aws_client, caplog
):
    """What a stack deployed before the outbox table left behind: queued revocations, a
    revoke-all cut short, and the audit trail, all moved to the outbox table."""
    client = aws_client("dynamodb")
    limits = service.tables["limits"]
    queued, cut_short = _older_layout(service, client)
    outbox = service.administration.outbox
    assert outbox.audit_entries(query=AuditQuery(action="node.remove")) == []  # Not moved yet.

    with caplog.at_level(logging.WARNING):
        result = sweep.sweep_handler({}, None)

    assert result == {"pending": 0, "batches": 1, "failed": 0, "stopped": "empty"}
    assert "moved 4 item(s) of the older layout" in caplog.text
    assert {_bare(s) for s in [*queued, *cut_short]} <= _revoked_at_ca(service)
    bob = service.administration.ledger.find(user_id="bob")
    assert {row.status.value for row in bob} == {"revoked"}
    left = [item["key"]["S"] for item in client.scan(TableName=limits)["Items"]]
    assert [key for key in left if key.startswith(("revoke#", "sweep#", "audit#"))] == []
    # The entry is listed from its day's partition, as the older version recorded it.
    (entry,) = outbox.audit_entries(query=AuditQuery(action="node.remove"))
    assert (entry.at, entry.action, entry.actor) == (
        datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
        "node.remove",
        "ops",
    )
    assert (entry.user_id, entry.source) == ("", "")
    assert outbox.audit_entries(query=AuditQuery(until=entry.at)) == []


def test_the_upgrade_check_recipe_counts_what_is_left_of_the_older_layout(
    service, aws_client, moto_endpoint
):
    """docs/aws.md's check, run as written (the AWS CLI against moto): 4 items of the
    older layout before the sweep's run, 0 after."""
    aws = shutil.which("aws")
    # A version manager's shim can stand there with no CLI behind it.
    if aws is None or subprocess.run([aws, "--version"], capture_output=True).returncode:
        pytest.skip("needs the AWS CLI: apt-get install awscli (or run make deps as root)")
    _older_layout(service, aws_client("dynamodb"))
    assert _upgrade_check(service, moto_endpoint) == "4"
    sweep.sweep_handler({}, None)
    assert _upgrade_check(service, moto_endpoint) == "0"


def test_an_item_an_older_function_writes_during_the_deploy_is_moved_by_a_later_run(
    service, aws_client
):
    from nodecert.store.dynamodb.upgrade import CHECK_EVERY

    outbox = service.administration.outbox
    now = service.authority.clock()
    outbox.upgrade._clock = lambda: now
    assert sweep.sweep_handler({}, None)["pending"] == 0  # Empty: the marker says since when.
    (serial,) = _queue(service, 1)
    outbox.revocation_sent(serial)
    # The older API function, still running during the deploy, queues one the old way.
    _old_item(
        aws_client("dynamodb"),
        service.tables["limits"],
        f"revoke#{serial}",
        serial=serial,
        reason="superseded",
        queuedAt="2026-12-07T08:00:00.000000Z",
    )
    assert sweep.sweep_handler({}, None)["pending"] == 0  # Within a minute: not looked.
    assert _bare(serial) not in _revoked_at_ca(service)

    outbox.upgrade._clock = lambda: now + CHECK_EVERY
    assert sweep.sweep_handler({}, None)["pending"] == 0

    assert _bare(serial) in _revoked_at_ca(service)
    marker = aws_client("dynamodb").get_item(
        TableName=service.tables["outbox"],
        Key={"queue": {"S": "moved"}, "id": {"S": "limits"}},
        ConsistentRead=True,
    )
    assert "Item" not in marker  # Found some: the hour of quiet starts again.


class _FailsToDelete:
    """The store's client, except that deleting from the limits table fails once."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_item(self, **params: Any) -> Any:
        from botocore.exceptions import ClientError

        if not self.failed and params["Key"].get("key"):
            self.failed = True
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "test"}}, "DeleteItem"
            )
        return self._client.delete_item(**params)


def test_a_move_cut_short_is_done_again_and_the_revocation_sent(service, aws_client):
    from nodecert.core.errors import StoreUnavailableError

    (serial,) = _queue(service, 1)
    outbox = service.administration.outbox
    outbox.revocation_sent(serial)
    _old_item(
        aws_client("dynamodb"),
        service.tables["limits"],
        f"revoke#{serial}",
        serial=serial,
        reason="keyCompromise",
        queuedAt="2026-12-07T08:00:00.000000Z",
    )
    flaky = _FailsToDelete(outbox._client)
    outbox.upgrade._client = flaky

    with pytest.raises(StoreUnavailableError, match="throttled"):
        sweep.sweep_handler({}, None)
    assert flaky.failed  # Written to the outbox table, still in the limits table.

    assert sweep.sweep_handler({}, None) == {
        "pending": 0,
        "batches": 1,
        "failed": 0,
        "stopped": "empty",
    }
    assert _bare(serial) in _revoked_at_ca(service)
