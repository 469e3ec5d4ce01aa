"""Every notice status, its groupings and the legal transitions, in one place.

One notice is one child at one setting (docs/http.md, the status lifecycle). Every path that
changes a status asks :func:`check_transition` first, so an illegal move is refused the same
way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class NoticeStatus(StrEnum):
    REVIEW = "review"
    SCHEDULED = "scheduled"
    SEALED = "sealed"
    SENDING = "sending"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    CANCELLED = "cancelled"
    RETRACTED = "retracted"
    FAILED = "failed"


# The named groups of statuses. Each says what its members have in common; services use
# these and never spell a group out themselves.

FINAL = frozenset(
    {NoticeStatus.ACKNOWLEDGED, NoticeStatus.CANCELLED, NoticeStatus.RETRACTED, NoticeStatus.FAILED}
)
"""Nothing more will happen to it (retention counts from the last of these)."""

UNSENT = frozenset({NoticeStatus.REVIEW, NoticeStatus.SCHEDULED, NoticeStatus.SEALED})
"""Not sent yet: a new version supersedes it, a withdrawal cancels it."""

WITHHELD = frozenset({NoticeStatus.SCHEDULED, NoticeStatus.SEALED, NoticeStatus.CANCELLED})
"""Never to be shown to a Key Adult unless one of its envelopes was already handed over:
still embargoed until its release time, or cancelled before sending."""

IN_FLIGHT = frozenset({NoticeStatus.SEALED, NoticeStatus.SENDING})
"""Released, its envelopes on their way and none delivered: the sweeper watches it, and
giving up on it makes it ``failed``."""

AWAITING_ACK = frozenset({NoticeStatus.SENDING, NoticeStatus.DELIVERED})
"""Released and not yet answered: overdue once the day has started without an answer."""

DELIVERABLE = frozenset(
    {NoticeStatus.SEALED, NoticeStatus.SENDING, NoticeStatus.DELIVERED, NoticeStatus.ACKNOWLEDGED}
)
"""Still standing, so its envelopes may be delivered (not withdrawn, failed or in review)."""

RETRACTABLE = frozenset({NoticeStatus.DELIVERED, NoticeStatus.ACKNOWLEDGED})
"""A Key Adult has it: withdrawing the incident needs a retraction, not a cancellation."""


def values(group: Iterable[StrEnum]) -> list[str]:
    """The stored strings of a group, for a query (``Notice.status.in_(values(FINAL))``)."""
    return sorted(status.value for status in group)


_ALLOWED: dict[NoticeStatus, frozenset[NoticeStatus]] = {
    NoticeStatus.REVIEW: frozenset({NoticeStatus.SCHEDULED, NoticeStatus.CANCELLED}),
    NoticeStatus.SCHEDULED: frozenset(
        {NoticeStatus.SEALED, NoticeStatus.CANCELLED, NoticeStatus.REVIEW}
    ),
    NoticeStatus.SEALED: frozenset({NoticeStatus.SENDING, NoticeStatus.CANCELLED}),
    # Cancelled: withdrawn while sending, before any envelope was delivered.
    NoticeStatus.SENDING: frozenset(
        {NoticeStatus.DELIVERED, NoticeStatus.FAILED, NoticeStatus.SEALED, NoticeStatus.CANCELLED}
    ),
    NoticeStatus.DELIVERED: frozenset(
        {NoticeStatus.ACKNOWLEDGED, NoticeStatus.RETRACTED, NoticeStatus.REVIEW}
    ),
    NoticeStatus.ACKNOWLEDGED: frozenset({NoticeStatus.RETRACTED}),
    NoticeStatus.CANCELLED: frozenset(),
    NoticeStatus.RETRACTED: frozenset(),
    NoticeStatus.FAILED: frozenset(),
}


class IncidentStatus(StrEnum):
    """An incident is ``active`` from its first version until its force withdraws it."""

    ACTIVE = "active"
    WITHDRAWN = "withdrawn"


class DeliveryOutcome(StrEnum):
    """How one delivery attempt through one channel ended (``delivery_attempts.outcome``).

    ``retry`` is the only one after which the channel tries again; webhooks answer
    ``delivered``, e-mail ``sent`` (the pointer went; delivery is the portal's hand-over),
    and ``skipped`` is e-mail with no SMTP server configured."""

    DELIVERED = "delivered"
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"


FINAL_OUTCOMES = frozenset(
    {
        DeliveryOutcome.DELIVERED,
        DeliveryOutcome.FAILED,
        DeliveryOutcome.SENT,
        DeliveryOutcome.SKIPPED,
    }
)
"""After one of these a channel is done with an envelope."""


class IllegalTransition(ValueError):
    """A status change the lifecycle does not allow."""


def check_transition(current: NoticeStatus | None, new: NoticeStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is allowed.

    ``current`` is ``None`` for a notice being created, which may start only in
    ``scheduled`` or ``review``.
    """
    if current is None:
        if new in (NoticeStatus.SCHEDULED, NoticeStatus.REVIEW):
            return
        raise IllegalTransition(f"a notice cannot start as {new}")
    if new not in _ALLOWED[current]:
        raise IllegalTransition(f"{current} -> {new} is not allowed")
