"""Structured logs (structlog), JSON or console, with personal data removed.

No personal data in logs, ever: :func:`redact_personal_data` runs before any renderer and
drops the values of fields that can hold a name, a date of birth, an address or free text,
then masks anything in the remaining strings that looks like a postcode or a date.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

REDACTED = "[redacted]"

# Fields whose whole value is personal data or free text that may hold it.
PERSONAL_KEYS = frozenset(
    {
        "name",
        "given_name",
        "family_name",
        "full_name",
        "child",
        "children",
        "pupil",
        "date_of_birth",
        "dob",
        "birth_date",
        "postcode",
        "address",
        "location",
        "circumstances",
        "police_actions",
        "voice",
        "where_during",
        "officer",
        "contact",
        "email",
        "phone",
        "body",
        "payload",
        "report",
        "notice",
        "reply",
        "upn",
        "school_hint",
    }
)

# A postcode, or a date: one pattern, so each string is scanned once (every log line of
# every message passes here).
_POSTCODE_OR_DATE = re.compile(
    r"\b[A-Z]{1,2}[0-9][A-Z0-9]?\s*[0-9][A-Z]{2}\b"
    r"|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b",
    re.IGNORECASE,
)


def _scrub(value: str) -> str:
    return _POSTCODE_OR_DATE.sub(REDACTED, value)


def _clean(key: str, value: Any) -> Any:
    if key.lower() in PERSONAL_KEYS:
        return REDACTED
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, dict):
        return {k: _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(key, v) for v in value]
    return value


def safe_exception(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Render ``exc_info`` as frames and the exception's class only.

    Exception messages often quote the input (pydantic does), so the message is dropped.
    """
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    kind, _value, tb = exc_info
    if kind is not None:
        # Frames as file:line in function only; source lines can quote data too.
        frames = "".join(
            f"  {f.filename}:{f.lineno} in {f.name}\n" for f in traceback.extract_tb(tb)
        )
        event_dict["exception"] = f"{frames}{kind.__module__}.{kind.__qualname__}: {REDACTED}"
    return event_dict


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: personal fields dropped, postcodes and dates masked."""
    for key in list(event_dict):
        if key == "timestamp":
            continue
        event_dict[key] = _clean(key, event_dict[key])
    return event_dict


def configure_logging(
    fmt: Literal["console", "json"] = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog (and the standard library's loggers) once, for the whole process."""
    stream = stream or sys.stderr
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        safe_exception,
        redact_personal_data,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aio-pika, aiohttp, sqlalchemy) go through the same redaction.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
