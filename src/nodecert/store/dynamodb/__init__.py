"""The DynamoDB store: ``store`` (ledger and node directory), ``limits`` (single-use tokens
and rate buckets), ``outbox`` (revocations that finish), ``audit`` (the audit trail),
``upgrade`` (an older layout moved), ``tables`` (the table schemas, error translation) and
``items`` (items to records and back)."""
