"""Stores: ledger, node directory, rate buckets, replay guard, outbox and audit trail.

One subpackage per technology: ``sqlite`` (one file, several workers), ``postgres``
(several servers, one database) and ``dynamodb`` (the serverless stack); ``sql`` is the SQL
the first two share; ``memory_query`` is the in-memory reference for a ledger query.
"""
