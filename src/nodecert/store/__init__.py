"""Stores: ledger, node directory, rate buckets, replay guard (SQLite, PostgreSQL, DynamoDB)."""
