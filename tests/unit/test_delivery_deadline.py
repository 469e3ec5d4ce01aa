"""How long a webhook is retried: a notice released before its setting's day starts is
retried until the day starts (then failed, so admins hear of it before the morning is
out), whatever the attempt count; anything else for ``max_attempts`` attempts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from encompass.services.delivery.attempt import (
    DeliverEnvelope,
    _Plan,
    _retry_until,
    day_start,
    delivery_backoff,
)

RELEASED = datetime(2026, 3, 3, 7, 30, tzinfo=UTC)  # a Tuesday, GMT
SUMMER = datetime(2026, 6, 2, 6, 30, tzinfo=UTC)  # 07:30 BST


def _handler() -> DeliverEnvelope:
    return DeliverEnvelope(None, None, None, None, max_attempts=4)  # type: ignore[arg-type]


def _plan(retry_until: datetime | None) -> _Plan:
    return _Plan("e", "n", "notice", "{}", "https://x", None, "a@b", retry_until)


def test_the_day_starts_at_the_settings_time_in_uk_time() -> None:
    assert day_start(RELEASED, time(8, 45)) == datetime(2026, 3, 3, 8, 45, tzinfo=UTC)
    assert day_start(SUMMER, time(8, 45)) == datetime(2026, 6, 2, 7, 45, tzinfo=UTC)


def test_only_a_notice_released_before_the_day_starts_has_a_deadline() -> None:
    assert _retry_until("notice", RELEASED, time(8, 45)) == RELEASED.replace(hour=8, minute=45)
    assert _retry_until("notice", RELEASED, time(7, 0)) is None
    assert _retry_until("retraction", RELEASED, time(8, 45)) is None


def test_a_notice_is_retried_past_max_attempts_until_the_day_starts() -> None:
    handler, plan = _handler(), _plan(RELEASED.replace(hour=8, minute=45))
    assert not handler._give_up(plan, 20, RELEASED + timedelta(minutes=30))
    assert handler._give_up(plan, 21, RELEASED + timedelta(minutes=75))


def test_without_a_deadline_max_attempts_bounds_the_retries() -> None:
    handler, plan = _handler(), _plan(None)
    assert not handler._give_up(plan, 3, RELEASED)
    assert handler._give_up(plan, 4, RELEASED)


def test_the_backoff_grows_to_five_minutes() -> None:
    assert delivery_backoff(1, rng=lambda: 1.0) == 1.0
    assert delivery_backoff(20, rng=lambda: 1.0) == 300.0
    assert delivery_backoff(20, rng=lambda: 0.0) == 150.0
