"""Delivery policy without I/O: backoff, webhook answers, signatures, URLs, e-mail
pointers, SMTP errors and the acknowledgement deadline."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, time, timedelta

import aiosmtplib
import pytest

from encompass.adapters.smtp import classify_error, pointer_message
from encompass.adapters.webhook import acceptable_url, classify, sign, signature_key, verify
from encompass.services.delivery.attempt import delivery_backoff
from encompass.services.receiving.escalate_overdue import ack_deadline


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    lowest = [delivery_backoff(n, rng=lambda: 0.0) for n in range(1, 12)]
    highest = [delivery_backoff(n, rng=lambda: 1.0) for n in range(1, 12)]
    assert lowest == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 150.0, 150.0]
    assert highest == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]


def test_backoff_jitter_spreads_retries() -> None:
    values = {round(delivery_backoff(4), 6) for _ in range(50)}
    assert len(values) > 40 and all(4.0 <= v <= 8.0 for v in values)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (408, "retry"),
        (429, "retry"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
        (301, "failed"),
    ],
)
def test_webhook_answers_are_classified(status: int, outcome: str) -> None:
    assert classify(status).outcome == outcome


def test_the_signature_verifies_with_the_secret_and_nothing_else() -> None:
    secret = "whsec_abc"
    body = b'{"format":"encompass-envelope/1"}'
    header = sign(body, key=signature_key(secret), timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify(body, header, secret=secret, now=1_700_000_100)
    assert not verify(body, header, secret="whsec_abd", now=1_700_000_100)
    assert not verify(body + b"x", header, secret=secret, now=1_700_000_100)
    assert not verify(body, header, secret=secret, now=1_700_001_000)  # too old: a replay
    assert not verify(body, "garbage", secret=secret, now=1_700_000_000)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cpoms.example/hook", True),
        ("http://127.0.0.1:8080/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]/hook", True),
        ("http://cpoms.example/hook", False),
        ("http://10.0.0.1/hook", False),
        ("ftp://x/y", False),
        ("https:///nohost", False),
    ],
)
def test_only_https_or_loopback_http(url: str, ok: bool) -> None:
    assert acceptable_url(url) is ok


def test_the_pointer_says_where_and_nothing_else() -> None:
    message = pointer_message(
        sender="encompass@la.example",
        to="dsl@school.example",
        notice_id="N-42",
        portal_url="https://encompass.example/",
    )
    parsed = email.message_from_bytes(bytes(message), policy=email.policy.default)
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "N-42" in text and "https://encompass.example/inbox/notices/N-42" in text
    assert "/v1/" not in text
    assert set(parsed.keys()) == {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    }


def test_smtp_refusals_fail_and_transient_errors_retry() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "no such user", "x@y")]
    )
    assert classify_error(refused).outcome == "failed"
    busy = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(451, "try later", "x@y")]
    )
    assert classify_error(busy).outcome == "retry"
    assert classify_error(aiosmtplib.SMTPResponseException(554, "no")).outcome == "failed"
    assert classify_error(aiosmtplib.SMTPConnectError("refused")).outcome == "retry"
    assert classify_error(ConnectionRefusedError()).outcome == "retry"


GRACE = timedelta(hours=1)


def test_the_deadline_is_the_day_start_in_london_on_the_release_day() -> None:
    # Winter (GMT): 07:30 release, 08:45 start
    released = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert ack_deadline(released, time(8, 45), GRACE) == datetime(2026, 11, 24, 8, 45, tzinfo=UTC)
    # Summer (BST): 08:45 in London is 07:45 UTC
    summer = datetime(2026, 6, 9, 6, 30, tzinfo=UTC)
    assert ack_deadline(summer, time(8, 45), GRACE) == datetime(2026, 6, 9, 7, 45, tzinfo=UTC)
    # The Monday after the clocks go forward (29 March 2026)
    spring = datetime(2026, 3, 30, 6, 30, tzinfo=UTC)
    assert ack_deadline(spring, time(8, 45), GRACE) == datetime(2026, 3, 30, 7, 45, tzinfo=UTC)


def test_a_notice_released_during_the_day_gets_the_grace_period() -> None:
    released = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert ack_deadline(released, time(8, 45), GRACE) == released + GRACE
