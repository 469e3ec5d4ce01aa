"""Which failures mean "the database or the broker is away" (503 and a retry that does not
count), and which are the request's or the message's own."""

from __future__ import annotations

import aiormq.exceptions
import asyncpg.exceptions
import pytest
from sqlalchemy import exc as sa

from encompass.adapters.unavailable import unavailable


def wrapped(inner: BaseException) -> BaseException:
    """``inner`` as SQLAlchemy raises it: a DBAPIError with the driver's error as orig."""
    try:
        try:
            raise inner
        except Exception as exc:
            raise sa.InterfaceError("SELECT 1", {}, exc) from exc
    except sa.InterfaceError as outer:
        return outer


def raised_in(module: str, exc: BaseException) -> BaseException:
    """``exc`` with a traceback frame in ``module``, as if that library had raised it."""
    code = compile("def fail(exc):\n    raise exc\n", module, "exec")
    scope: dict[str, object] = {"__name__": module}
    exec(code, scope)
    try:
        scope["fail"](exc)  # type: ignore[operator]
    except BaseException as raised:
        return raised
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (raised_in("asyncpg.connect_utils", ConnectionRefusedError(111, "refused")), "database"),
        (raised_in("aiormq.connection", ConnectionResetError(104, "reset")), "broker"),
        (raised_in("asyncpg.connect_utils", TimeoutError()), "database"),
        (ConnectionRefusedError(111, "refused by our own code"), None),
        (TimeoutError("a webhook did not answer"), None),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), "database"),
        (asyncpg.exceptions.AdminShutdownError("terminating"), "database"),
        (wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("gone")), "database"),
        (aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"), "broker"),
        (ValueError("a bad value"), None),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), None),
        (wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")), None),
    ],
)
def test_outages_are_told_apart_from_other_failures(
    exc: BaseException, expected: str | None
) -> None:
    assert unavailable(exc) == expected
