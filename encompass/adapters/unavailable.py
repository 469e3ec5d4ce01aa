"""Telling "the database or the broker is away" apart from every other failure.

Such a failure says nothing about the request or the message: the API answers ``503`` with
``Retry-After`` (never 500), and a worker puts the message back without counting it as a
failed attempt, so an outage of any length dead-letters nothing.
"""

from __future__ import annotations

from typing import Literal

import aiormq.exceptions
import asyncpg.exceptions
from sqlalchemy import exc as sa

Dependency = Literal["database", "broker"]

_BROKER = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionClosed,
)
_DATABASE = (
    asyncpg.exceptions.PostgresConnectionError,
    # 57P0x: shutting down, starting up, terminated by an administrator
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


# Where a bare socket error comes from tells whose it is: a ConnectionRefusedError raised
# inside asyncpg's connect is the database being away; one raised by our own code is not.
_DRIVERS: dict[str, Dependency] = {
    "asyncpg": "database",
    "sqlalchemy": "database",
    "aiormq": "broker",
    "aio_pika": "broker",
    "pamqp": "broker",
}


def unavailable(exc: BaseException) -> Dependency | None:
    """Which dependency ``exc`` (or an exception it was raised from) says is unreachable:
    ``"database"`` or ``"broker"``, or ``None`` for any other failure (a bug, bad data, a
    socket error that no database or broker driver raised)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _BROKER):
            return "broker"
        if isinstance(current, (*_DATABASE, sa.DisconnectionError)):
            return "database"
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return "database"
        if isinstance(current, sa.TimeoutError):  # the pool found no connection in time
            return "database"
        if (
            isinstance(current, OSError | TimeoutError)
            and (driver := _raised_by_driver(current)) is not None
        ):
            return driver
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return None


def _raised_by_driver(exc: BaseException) -> Dependency | None:
    frame = exc.__traceback__
    found: Dependency | None = None
    while frame is not None:
        module = str(frame.tb_frame.f_globals.get("__name__", "")).split(".")[0]
        found = _DRIVERS.get(module, found)
        frame = frame.tb_next
    return found
