"""Every notice status, its groupings and the legal transitions, in one place.

One notice is one child at one setting (docs/http.md, the status lifecycle). Every path that
changes a status asks :func:`check_transition` first, so an illegal move is refused the same
way everywhere.
"""

from __future__ import annotations

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


FINAL = frozenset(
    {NoticeStatus.ACKNOWLEDGED, NoticeStatus.CANCELLED, NoticeStatus.RETRACTED, NoticeStatus.FAILED}
)
UNSENT = frozenset({NoticeStatus.REVIEW, NoticeStatus.SCHEDULED, NoticeStatus.SEALED})

_ALLOWED: dict[NoticeStatus, frozenset[NoticeStatus]] = {
    NoticeStatus.REVIEW: frozenset({NoticeStatus.SCHEDULED, NoticeStatus.CANCELLED}),
    NoticeStatus.SCHEDULED: frozenset(
        {NoticeStatus.SEALED, NoticeStatus.CANCELLED, NoticeStatus.REVIEW}
    ),
    NoticeStatus.SEALED: frozenset({NoticeStatus.SENDING, NoticeStatus.CANCELLED}),
    NoticeStatus.SENDING: frozenset(
        {NoticeStatus.DELIVERED, NoticeStatus.FAILED, NoticeStatus.SEALED}
    ),
    NoticeStatus.DELIVERED: frozenset(
        {NoticeStatus.ACKNOWLEDGED, NoticeStatus.RETRACTED, NoticeStatus.REVIEW}
    ),
    NoticeStatus.ACKNOWLEDGED: frozenset({NoticeStatus.RETRACTED}),
    NoticeStatus.CANCELLED: frozenset(),
    NoticeStatus.RETRACTED: frozenset(),
    NoticeStatus.FAILED: frozenset(),
}


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
