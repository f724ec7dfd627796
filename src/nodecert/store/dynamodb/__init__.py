"""The DynamoDB store: ``store`` (ledger and node directory), ``limits`` (single-use tokens
and rate buckets), ``outbox`` (revocations that finish, the audit trail), ``tables`` (the
table schemas, error translation) and ``items`` (items to records and back)."""
