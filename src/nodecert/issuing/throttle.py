"""A key admitted at most once per period: how repeated events are recorded sparingly."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

__all__ = ["Throttle"]


class Throttle:
    """Admits a key at most once per ``every`` (a bounded memory of recent keys)."""

    _MAX_KEYS = 10_000

    def __init__(self, every: timedelta) -> None:
        self._every = every
        self._seen: dict[tuple[str, ...], datetime] = {}
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, ...], now: datetime) -> bool:
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self._every:
                return False
            if len(self._seen) >= self._MAX_KEYS:
                self._seen = {k: t for k, t in self._seen.items() if now - t < self._every}
            self._seen[key] = now
            return True
