"""Structured JSON logs (structlog + orjson), one line per stage.

PHI stays out by construction: log helpers take ids, names and error classes, never payloads
or exception messages from parsing user data. `error_fields` gives an exception's class and
where it was raised, which is what an operator needs and nothing a patient would mind.

Values read from a message header (MSH-10 control id, MSH-9 type, MSH-4 sender) are still the
sender's bytes: a mutated frame can put an address, a phone number or 100 KB there. Every line
passes `header_fields`, which keeps such a value only when it is shaped like what it claims to
be and at most 64 characters, and otherwise logs `<invalid: N chars>`: never the value.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
import uuid
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict

__all__ = ["configure", "error_fields", "header_fields", "header_value"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_RUN = uuid.uuid4().hex[:16]  # this process's run: the trace of lines about no message or connection


def _trace(_: Any, __: str, event: EventDict) -> EventDict:
    """Every line gets a trace id: the message's id (the same from intake to delivery, across
    processes), else the connection's, else this process run's; `grep trace_id` follows one."""
    event.setdefault("trace_id", event.get("message_id") or event.get("connection") or _RUN)
    return event


_MAX_HEADER = 64
#: Log keys that carry a value from a message header, and the shape such a value must have. A
#: control id (MSH-10, a file's row key): letters, digits and . _ - : / + # (no space, no @);
#: a message type: `ADT^A01^ADT_A01`, `FHIR^Patient`, `CSV^lab_results`; a facility or
#: application (MSH-3/4, HD.1): the same as a control id, with spaces inside.
_ID = re.compile(r"[A-Za-z0-9._:/+#-]+")
_TYPE = re.compile(r"[A-Za-z0-9_]+(?:\^[A-Za-z0-9_]+){0,2}")
_NAME = re.compile(r"[A-Za-z0-9._:/+#-]+(?: [A-Za-z0-9._:/+#-]+)*")
_HEADER_KEYS: dict[str, re.Pattern[str]] = {
    "control_id": _ID, "original_control_id": _ID, "message_type": _TYPE, "type": _TYPE,
    "sender": _NAME, "facility": _NAME, "sending_facility": _NAME, "sending_application": _NAME,
}


def header_value(key: str, value: Any) -> Any:
    """A header value fit for a log line: as it is when shaped like a `key` and short, else a marker
    with its length only. Keys that are not header fields pass unchanged."""
    shape = _HEADER_KEYS.get(key)
    if shape is None or not isinstance(value, str) or value == "":
        return value
    if len(value) <= _MAX_HEADER and shape.fullmatch(value):
        return value
    return f"<invalid: {len(value)} chars>"


def header_fields(_: Any, __: str, event: EventDict) -> EventDict:
    """Processor: every message-header value of the line through `header_value` (see the module docstring)."""
    for key in _HEADER_KEYS.keys() & event.keys():
        event[key] = header_value(key, event[key])
    return event


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            header_fields,
            _trace,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Libraries)]:
        root.removeHandler(handler)
    root.addHandler(_Libraries(logging.WARNING))
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    sys.unraisablehook = _unraisable
    threading.excepthook = _thread_died


class _Libraries(logging.Handler):
    """The libraries' own warnings (psycopg, kombu, amqp, pika) as JSON lines like ours.

    Unconfigured, Python prints them as bare text (psycopg's "error ignored terminating …" when
    PostgreSQL restarts), breaking the JSON-only stderr. The line keeps the logger and the message's template,
    not its arguments: those quote server errors, which can quote data.
    """

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"logger": record.name, "template": str(record.msg)[:300]}
        if record.exc_info and record.exc_info[1] is not None:
            fields |= error_fields(record.exc_info[1])
        log = structlog.get_logger("wasla.library")
        (log.error if record.levelno >= logging.ERROR else log.warning)("library_log", **fields)


def _unraisable(args: Any) -> None:
    """An error Python could not raise (in a finaliser): one JSON line, not its default traceback
    and message (the message can quote data)."""
    if args.exc_value is None:
        return
    where = getattr(args.object, "__qualname__", None) or type(args.object).__name__
    structlog.get_logger("wasla").warning("error_ignored", object=where, **error_fields(args.exc_value))


def _thread_died(args: threading.ExceptHookArgs) -> None:
    """A thread ended by an error no handler caught: logged as a JSON line, without its message."""
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    structlog.get_logger("wasla").error("thread_died", thread=args.thread.name if args.thread else "",
                                        **error_fields(args.exc_value))


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The error's class and the innermost Wasla frame that raised it; never its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    for fr in reversed(frames):
        if "/engine/" in fr.filename or "/channels/" in fr.filename:
            where = f"{fr.filename.rsplit('/', 2)[-2]}/{fr.filename.rsplit('/', 1)[-1]}:{fr.lineno}"
            break
    return {"error": exc.__class__.__name__, "at": where} if where else {"error": exc.__class__.__name__}
