"""Structured JSON logs (structlog + orjson), one line per stage.

PHI stays out by construction: log helpers take ids, names and error classes, never payloads
or exception messages from parsing user data. `error_fields` gives an exception's class and
where it was raised, which is what an operator needs and nothing a patient would mind.
"""

from __future__ import annotations

import logging
import sys
import traceback
import uuid
from typing import Any

import orjson
import structlog

__all__ = ["configure", "error_fields"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_RUN = uuid.uuid4().hex[:16]  # this process's run: the trace of lines about no message or connection


def _trace(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every line gets a trace id: the message's id (the same from intake to delivery, across
    processes), else the connection's, else this process run's; `grep trace_id` follows one."""
    event.setdefault("trace_id", event.get("message_id") or event.get("connection") or _RUN)
    return event


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _trace,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The error's class and the innermost Wasla frame that raised it; never its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    for fr in reversed(frames):
        if "/engine/" in fr.filename or "/channels/" in fr.filename:
            where = f"{fr.filename.rsplit('/', 2)[-2]}/{fr.filename.rsplit('/', 1)[-1]}:{fr.lineno}"
            break
    return {"error": exc.__class__.__name__, "at": where} if where else {"error": exc.__class__.__name__}
