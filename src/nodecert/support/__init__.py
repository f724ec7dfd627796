"""Plumbing shared by the adapters and entry points: logs, metrics. Below them, above the core."""
