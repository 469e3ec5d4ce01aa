"""No personal data in logs, ever: the processors remove it, whatever the caller passes."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from encompass.logging import configure_logging

PERSONAL = [
    "Amelia",
    "Smith",
    "2015-03-02",
    "TF3 4NT",
    "said she was scared",
    "upstairs bedroom",
    "14 Acacia Avenue",
]


@pytest.fixture(params=["json", "console"])
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(request.param, "debug", stream=stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def assert_clean(text: str) -> None:
    for value in PERSONAL:
        assert value not in text, f"{value!r} reached the log"


def test_personal_fields_are_removed(captured: io.StringIO) -> None:
    structlog.get_logger().info(
        "incident.received",
        given_name="Amelia",
        family_name="Smith",
        date_of_birth="2015-03-02",
        postcode="TF3 4NT",
        voice="said she was scared",
        where_during="upstairs bedroom",
        address="14 Acacia Avenue",
        incident_id="abc",
    )
    text = captured.getvalue()
    assert_clean(text)
    assert "incident.received" in text and "abc" in text


def test_nested_and_free_text_values_are_scrubbed(captured: io.StringIO) -> None:
    structlog.get_logger().warning(
        "odd",
        detail="child born 2015-03-02 living at TF3 4NT",
        extra={"children": [{"given_name": "Amelia"}], "count": 1},
    )
    text = captured.getvalue()
    assert_clean(text)
    # and the line itself was written, with only the personal parts taken out
    assert "odd" in text and "child born [redacted] living at [redacted]" in text


def test_exception_messages_are_not_logged(captured: io.StringIO) -> None:
    try:
        raise ValueError("Amelia Smith 2015-03-02 TF3 4NT")
    except ValueError:
        structlog.get_logger().exception("failed")
    text = captured.getvalue()
    assert_clean(text)
    assert "ValueError" in text


def test_standard_library_loggers_are_redacted_too(captured: io.StringIO) -> None:
    logging.getLogger("aio_pika").warning("message for %s born %s", "TF3 4NT", "2015-03-02")
    text = captured.getvalue()
    assert_clean(text)
    # and the line itself was written, with only the personal parts taken out
    assert "message for [redacted] born [redacted]" in text
