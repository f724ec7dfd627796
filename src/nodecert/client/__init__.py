"""The Python client over the HTTP API (the CLI's only network code)."""
