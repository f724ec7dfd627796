"""Life after issuance on every store: at-most-once renewal, revocations that always finish,
the audit trail.

SQLite (a file under tmp_path), PostgreSQL (a schema of the session's throwaway cluster)
and DynamoDB (tables on the session's moto server, the outbox in the limits table) run the
very same tests, first on the store's own methods, then through the authority with a CA
that fails on the second revocation and then recovers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nodecert.backends.local.ca import LocalCA
from nodecert.core.errors import BackendUnavailableError, ConflictError
from nodecert.core.identity import format_serial
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateQuery,
    CertificateStatus,
    RevocationReason,
    SignedCertificate,
    SigningRequest,
)
from nodecert.issuing.authority import Authority
from tests.fakes import race
from tests.kit import ADMIN, TRUST_DOMAIN, admin_of, issue, new_ca
from tests.records import T0, certificate


@dataclasses.dataclass
class Stores:
    """A store and what keeps its outbox and audit trail (the store itself, but DynamoDB)."""

    store: Any
    outbox: Any


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "dynamodb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "sqlite":
        from nodecert.store.sqlite.store import SQLiteStore

        opened: Any = SQLiteStore(tmp_path / "data" / "nodecert.db")
        yield Stores(opened, opened)
        opened.close()
    elif request.param == "postgres":
        from nodecert.store.postgres.store import PostgresStore

        opened = PostgresStore(request.getfixturevalue("postgres_dsn"))
        yield Stores(opened, opened)
        opened.close()
    else:
        from nodecert.store.dynamodb.outbox import DynamoDBOutbox
        from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

        aws_client: Callable[[str], Any] = request.getfixturevalue("aws_client")
        unique: str = request.getfixturevalue("unique")
        client = aws_client("dynamodb")
        tables = f"nodes-{unique}", f"certificates-{unique}", f"limits-{unique}", f"outbox-{unique}"
        create_tables(
            client,
            nodes_table=tables[0],
            certificates_table=tables[1],
            limits_table=tables[2],
            outbox_table=tables[3],
        )
        store = DynamoDBStore(client, nodes_table=tables[0], certificates_table=tables[1])
        yield Stores(
            store,
            DynamoDBOutbox(
                client, certificates_table=tables[1], outbox_table=tables[3], limits_table=tables[2]
            ),
        )
        for table in tables:
            client.delete_table(TableName=table)


# The store's own methods


def test_dns_names_and_the_successor_are_kept(stores: Stores) -> None:
    store = stores.store
    first = certificate("0a01", dns_names=("n1.example", "n1.internal"))
    store.record(first).wait()
    assert store.get("0a01") == first
    successor = certificate("0a02", minutes=1, renewed_from="0a01")
    store.record_successor(successor)
    assert store.get("0a02") == successor
    assert store.get("0a01") == dataclasses.replace(
        first, status=CertificateStatus.SUPERSEDED, superseded_by="0a02"
    )


def test_a_certificate_is_superseded_once_and_a_refused_successor_writes_nothing(
    stores: Stores,
) -> None:
    store = stores.store
    store.record(certificate("0b01")).wait()
    store.record_successor(certificate("0b02", minutes=1, renewed_from="0b01"))
    with pytest.raises(ConflictError):
        store.record_successor(certificate("0b03", minutes=2, renewed_from="0b01"))
    assert store.get("0b03") is None
    assert store.get("0b01").superseded_by == "0b02"
    # A revoked certificate has no successor either.
    store.record(certificate("0b04", minutes=3)).wait()
    stores.outbox.revoke_and_queue(["0b04"], reason=RevocationReason.UNSPECIFIED, at=T0)
    with pytest.raises(ConflictError):
        store.record_successor(certificate("0b05", minutes=4, renewed_from="0b04"))
    assert store.get("0b05") is None


def test_racing_successors_of_one_certificate_exactly_one_wins(stores: Stores) -> None:
    store = stores.store
    if type(store).__name__ == "DynamoDBStore":
        pytest.skip(
            "moto's server does not serialize concurrent transactions (two conditional"
            " updates of one item can both pass); the shape DynamoDB makes atomic is checked"
            " by test_a_dynamodb_successor_is_one_conditional_transaction"
        )
    store.record(certificate("0c00")).wait()

    def renew(i: int) -> bool:
        try:
            store.record_successor(certificate(f"0c1{i}", minutes=1, renewed_from="0c00"))
        except ConflictError:
            return False
        return True

    won = race(6, renew)
    assert won.count(True) == 1
    winner = f"0c1{won.index(True)}"
    assert store.get("0c00").superseded_by == winner
    assert [row.serial for row in store.find(node_id="n1")] == [winner, "0c00"]


def test_a_dynamodb_successor_is_one_conditional_transaction(
    aws_client: Callable[[str], Any], unique: str
) -> None:
    from nodecert.store.dynamodb.store import DynamoDBStore, create_tables

    client = aws_client("dynamodb")
    tables = f"nodes-{unique}", f"certificates-{unique}"
    create_tables(client, nodes_table=tables[0], certificates_table=tables[1])
    store = DynamoDBStore(client, nodes_table=tables[0], certificates_table=tables[1])
    store.record(certificate("0c00")).wait()
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append(params),
    )
    store.record_successor(certificate("0c01", minutes=1, renewed_from="0c00"))
    (request,) = sent
    kinds = [next(iter(item)) for item in request["TransactItems"]]
    assert kinds == ["Update", "Put"]  # One transaction: both or neither.
    update = request["TransactItems"][0]["Update"]
    put = request["TransactItems"][1]["Put"]
    assert update["Key"] == {"serial": {"S": "0c00"}}
    assert update["ConditionExpression"] == "#status = :active"
    assert update["ExpressionAttributeValues"][":active"] == {"S": "active"}
    assert put["ConditionExpression"] == "attribute_not_exists(serial)"
    for table in tables:
        client.delete_table(TableName=table)


def test_superseded_rows_list_as_superseded_then_expired_and_never_as_active(
    stores: Stores,
) -> None:
    store = stores.store
    store.record(certificate("0d01")).wait()
    store.record_successor(certificate("0d02", minutes=1, renewed_from="0d01"))

    def listed(status: CertificateStatus, at: Any) -> list[str]:
        query = CertificateQuery(user_id="alice", node_id="n1", status=status, now=at)
        return [row.serial for row in store.query(query)]

    now = T0 + timedelta(days=1)
    assert listed(CertificateStatus.ACTIVE, now) == ["0d02"]
    assert listed(CertificateStatus.SUPERSEDED, now) == ["0d01"]
    assert listed(CertificateStatus.EXPIRED, now) == []
    later = T0 + timedelta(days=7, seconds=30)  # 0d01 expired, 0d02 (a minute younger) not.
    assert listed(CertificateStatus.EXPIRED, later) == ["0d01"]
    assert listed(CertificateStatus.SUPERSEDED, later) == []


def test_revoke_and_queue_revokes_live_rows_once_and_queues_them(stores: Stores) -> None:
    store, outbox = stores.store, stores.outbox
    store.record(certificate("0e01", issuer="arn:ca:1")).wait()
    store.record(certificate("0e02", minutes=1)).wait()
    store.record_successor(certificate("0e03", minutes=2, renewed_from="0e02"))
    reason = RevocationReason.AFFILIATION_CHANGED
    revoked = outbox.revoke_and_queue(["0e01", "0e02", "0e03", "ffff"], reason=reason, at=T0)
    assert sorted(row.serial for row in revoked) == ["0e01", "0e02", "0e03"]
    assert all(row.status is CertificateStatus.REVOKED for row in revoked)
    assert store.get("0e02").status is CertificateStatus.REVOKED  # Superseded: still live.
    again = outbox.revoke_and_queue(["0e01"], reason=RevocationReason.KEY_COMPROMISE, at=T0)
    assert again == []
    assert store.get("0e01").revocation_reason is reason  # The first reason stays.
    pending = outbox.pending_revocations(limit=10)
    assert sorted((p.serial, p.issuer, p.reason) for p in pending) == [
        ("0e01", "arn:ca:1", reason),
        ("0e02", None, reason),
        ("0e03", None, reason),
    ]
    assert len(outbox.pending_revocations(limit=2)) == 2
    outbox.revocation_sent("0e01")
    outbox.revocation_sent("0e01")  # Twice is harmless.
    assert outbox.count_pending_revocations() == 2


def test_the_audit_trail_keeps_who_did_what_newest_first(stores: Stores) -> None:
    outbox = stores.outbox
    for i, action in enumerate(("node.add", "node.transfer", "node.remove")):
        outbox.append_audit(
            AuditEntry(
                at=T0 + timedelta(seconds=i),
                actor="cli:root",
                action=action,
                target="n1",
                detail=f"step {i}",
            )
        )
    entries = outbox.audit_entries(limit=2)
    assert [(e.action, e.actor, e.detail) for e in entries] == [
        ("node.remove", "cli:root", "step 2"),
        ("node.transfer", "cli:root", "step 1"),
    ]
    assert entries[0].at == T0 + timedelta(seconds=2)


# Through the authority, with a CA that fails on the second revocation, then recovers


class FlakyCA:
    """A real local CA whose revocations fail from the second on while ``down``."""

    builds_in_process = True

    def __init__(self, inner: LocalCA) -> None:
        self.inner = inner
        self.down = False
        self.attempts = 0
        self.revoked: list[str] = []

    def issue(self, request: SigningRequest) -> SignedCertificate:
        return self.inner.issue(request)

    def chain(self) -> Any:
        return self.inner.chain()

    def revoke(
        self, certificate_serial: int, reason: RevocationReason, *, issuer: str | None = None
    ) -> None:
        self.attempts += 1
        if self.down and self.attempts >= 2:
            raise BackendUnavailableError("ca: down (test)", retry_after=1)
        self.revoked.append(format_serial(certificate_serial))


@pytest.fixture
def flaky(tmp_path: Path) -> FlakyCA:
    return FlakyCA(new_ca(tmp_path / "ca"))


def _authority(stores: Stores, ca: FlakyCA) -> Authority:
    return Authority(
        ca=ca,
        ledger=stores.store,
        nodes=stores.store,
        ownership=OwnershipPolicy(OwnershipMode.REGISTRY, stores.store),
        validity=ValidityPolicy(),
        organization="nodecert",
        trust_domain=TRUST_DOMAIN,
    )


def test_a_transfer_revokes_everything_at_once_and_the_ca_catches_up(
    stores: Stores, flaky: FlakyCA
) -> None:
    auth = _authority(stores, flaky)
    serials = sorted(
        issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox)).serial
        for _ in range(3)
    )
    flaky.down = True
    change = admin_of(auth, outbox=stores.outbox).put_node(ADMIN, "n1", "bob", actor="cli:root")
    assert (change.revoked, change.previous_owner, change.transferred) == (3, "alice", True)
    # The ledger is complete although the CA took only one revocation.
    assert {row.status for row in auth.ledger.find(node_id="n1")} == {CertificateStatus.REVOKED}
    assert len(flaky.revoked) == 1
    assert (
        admin_of(auth, outbox=stores.outbox).finish_revocations() == 2
    )  # Still down: nothing lost, nothing sent.
    flaky.down = False
    assert admin_of(auth, outbox=stores.outbox).finish_revocations() == 0
    assert sorted(flaky.revoked) == serials
    entry = stores.outbox.audit_entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.target) == ("cli:root", "node.transfer", "n1")
    assert "revoked=3" in entry.detail


def test_a_repeated_transfer_sweeps_what_a_crash_left(stores: Stores, flaky: FlakyCA) -> None:
    auth = _authority(stores, flaky)
    issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox))
    issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox))
    # A crash after the directory changed, before the sweep: the PUT is retried.
    stores.store.put_node("n1", "bob", at=T0)
    retried = admin_of(auth, outbox=stores.outbox).put_node(ADMIN, "n1", "bob")
    assert (retried.revoked, retried.transferred) == (2, False)
    assert {row.status for row in auth.ledger.find(node_id="n1")} == {CertificateStatus.REVOKED}
    assert admin_of(auth, outbox=stores.outbox).put_node(ADMIN, "n1", "bob").revoked == 0


def test_delete_and_revoke_all_finish_after_a_ca_outage(stores: Stores, flaky: FlakyCA) -> None:
    auth = _authority(stores, flaky)
    for _ in range(2):
        issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox))
        issue(auth, "alice", "n2", admin=admin_of(auth, outbox=stores.outbox))
    flaky.down = True
    assert (
        len(admin_of(auth, outbox=stores.outbox).revoke_all(ADMIN, user_id="alice", node_id=None))
        == 4
    )
    assert admin_of(auth, outbox=stores.outbox).finish_revocations() == 3
    flaky.down = False
    issue(auth, "alice", "n2", admin=admin_of(auth, outbox=stores.outbox))
    assert (
        admin_of(auth, outbox=stores.outbox).delete_node(ADMIN, "n2") == 1
    )  # Its own revocation reaches the CA at once;
    assert stores.outbox.count_pending_revocations() == 3  # the backlog is the drain's.
    assert admin_of(auth, outbox=stores.outbox).finish_revocations() == 0
    assert len(set(flaky.revoked)) == 5
    with pytest.raises(Exception, match="no node"):
        admin_of(auth, outbox=stores.outbox).delete_node(ADMIN, "n2")  # Nothing left to do: a 404.


def test_a_single_revoke_succeeds_while_the_ca_is_down(stores: Stores, flaky: FlakyCA) -> None:
    auth = _authority(stores, flaky)
    first, second = (
        issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox)),
        issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox)),
    )
    flaky.down = True
    admin_of(auth, outbox=stores.outbox).revoke(
        ADMIN, first.serial, RevocationReason.KEY_COMPROMISE
    )
    row = admin_of(auth, outbox=stores.outbox).revoke(
        ADMIN, second.serial, RevocationReason.KEY_COMPROMISE
    )
    assert row.status is CertificateStatus.REVOKED
    assert admin_of(auth, outbox=stores.outbox).finish_revocations() == 1
    flaky.down = False
    assert admin_of(auth, outbox=stores.outbox).finish_revocations() == 0
    assert sorted(flaky.revoked) == sorted([first.serial, second.serial])


def test_a_repeated_delete_sweeps_what_a_crash_left(stores: Stores, flaky: FlakyCA) -> None:
    auth = _authority(stores, flaky)
    issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox))
    issue(auth, "alice", "n1", admin=admin_of(auth, outbox=stores.outbox))
    # A crash after the node left the directory, before the sweep: the DELETE is retried.
    assert stores.store.delete_node("n1") is True
    assert (
        admin_of(auth, outbox=stores.outbox).delete_node(ADMIN, "n1") == 2
    )  # Not a 404: there was something to finish.
    assert {row.status for row in auth.ledger.find(node_id="n1")} == {CertificateStatus.REVOKED}
    assert admin_of(auth, outbox=stores.outbox).finish_revocations() == 0


def test_the_audit_trail_answers_filters_the_same_in_every_store(stores: Stores) -> None:
    outbox = stores.outbox
    rows = [
        ("node.add", "n1", "alice", "http 203.0.113.7"),
        ("certificate.revoke", "n1", "alice", "lambda 198.51.100.2"),
        ("node.transfer", "n1", "bob", "cli"),
        ("node.add", "n2", "bob", "cli"),
        ("nodex.add", "n3", "carol", ""),  # Not under the "node." prefix.
    ]
    for i, (action, node, user, source) in enumerate(rows):
        outbox.append_audit(
            AuditEntry(
                at=T0 + timedelta(seconds=i),
                actor="ops",
                action=action,
                target=node,
                user_id=user,
                node_id=node,
                source=source,
            )
        )

    def picked(**filters: Any) -> list[tuple[str, str]]:
        found = outbox.audit_entries(query=AuditQuery(**filters))
        # The store's answer is the reference filter's answer, newest first.
        assert all(AuditQuery(**filters).matches(e) for e in found)
        return [(e.action, e.node_id) for e in found]

    assert picked(node_id="n1") == [
        ("node.transfer", "n1"),
        ("certificate.revoke", "n1"),
        ("node.add", "n1"),
    ]
    assert picked(user_id="bob") == [("node.add", "n2"), ("node.transfer", "n1")]
    assert picked(action="node.") == [
        ("node.add", "n2"),
        ("node.transfer", "n1"),
        ("node.add", "n1"),
    ]
    assert picked(action="node.add", user_id="alice") == [("node.add", "n1")]
    assert picked(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3)) == [
        ("node.transfer", "n1"),
        ("certificate.revoke", "n1"),
    ]
    assert picked(limit=1) == [("nodex.add", "n3")]
    # A LIKE wildcard in a prefix widens nothing.
    assert picked(action="node%.") == []
    newest = outbox.audit_entries(query=AuditQuery(node_id="n1", limit=1))[0]
    assert (newest.user_id, newest.source) == ("bob", "cli")
