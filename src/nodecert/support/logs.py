"""Log lines: one JSON format for nodecert's and uvicorn's loggers, with the request's id.

``NODECERT_LOG_FORMAT=json`` makes every line of ``nodecert serve`` (nodecert's own,
uvicorn's server and access lines) and of the Lambda functions one JSON object::

    {"time": "2026-12-07T05:01:02.345Z", "level": "INFO", "logger": "nodecert",
     "message": "issued serial=…", "request_id": "5f0c…"}

``request_id`` is the id of the HTTP request (or Lambda invocation) being answered, set by
:func:`bind_request_id`; the same id goes back to the client in ``X-Request-Id``. No token,
key or password is ever put into a log message (docs/security.md), so none reaches a line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "JSONFormatter",
    "bind_request_id",
    "configure",
    "current_request_id",
    "uvicorn_log_config",
]

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nodecert_request_id", default=None
)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def bind_request_id(request_id: str | None = None) -> str:
    """Name the request this context answers (a new random id by default); return the id.

    The new id is a random (version 4) UUID in hex, as ``uuid.uuid4().hex`` makes it,
    without building a ``UUID`` object on every request.
    """
    value = request_id or _random_uuid_hex()
    _REQUEST_ID.set(value)
    return value


def _random_uuid_hex() -> str:
    # RFC 9562 section 5.4: 122 random bits, version 4, variant 10.
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def current_request_id() -> str | None:
    """The id bound by :func:`bind_request_id` in this context, if any."""
    return _REQUEST_ID.get()


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, request id."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line; an exception adds its type and traceback."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: str) -> None:
    """Set up the root logger once per process: ``text`` or ``json`` lines on stderr."""
    root = logging.getLogger()
    handler = logging.StreamHandler()
    formatter = JSONFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    handler.setFormatter(formatter)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def uvicorn_log_config(level: str, log_format: str) -> dict[str, Any] | None:
    """uvicorn's ``log_config`` for ``log_format``: None keeps uvicorn's own text lines.

    With ``json``, uvicorn's loggers hand their records to the root logger, whose handler
    :func:`configure` set up, so every line has one format.
    """
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JSONFormatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
        "root": {"handlers": ["default"], "level": level},
    }
