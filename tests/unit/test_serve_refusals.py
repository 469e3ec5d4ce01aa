"""``encompass serve`` refuses settings it cannot honour with one line, before it starts
anything."""

from __future__ import annotations

import pytest

from encompass.cli import main


def test_sharing_the_port_needs_rabbitmq(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ENCOMPASS_AMQP_URL", raising=False)
    monkeypatch.setenv("ENCOMPASS_HTTP_REUSE_PORT", "true")

    assert main(["serve"]) == 1

    error = capsys.readouterr().err
    assert error.startswith("encompass: ENCOMPASS_HTTP_REUSE_PORT needs RabbitMQ")
    assert "Traceback" not in error
