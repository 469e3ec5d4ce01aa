"""The one state machine every status change goes through."""

from __future__ import annotations

import itertools

import pytest

from encompass.domain.status import FINAL, IllegalTransition, NoticeStatus, check_transition


def test_the_happy_path_is_allowed() -> None:
    path = [
        None,
        NoticeStatus.SCHEDULED,
        NoticeStatus.SEALED,
        NoticeStatus.SENDING,
        NoticeStatus.DELIVERED,
        NoticeStatus.ACKNOWLEDGED,
    ]
    for current, new in itertools.pairwise(path):
        check_transition(current, new)  # type: ignore[arg-type]


@pytest.mark.parametrize("final", sorted(FINAL - {NoticeStatus.ACKNOWLEDGED}))
def test_nothing_leaves_a_final_status(final: NoticeStatus) -> None:
    for new in NoticeStatus:
        with pytest.raises(IllegalTransition):
            check_transition(final, new)


def test_a_notice_starts_scheduled_or_in_review() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(None, NoticeStatus.DELIVERED)


def test_a_sent_notice_cannot_be_cancelled_only_retracted() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(NoticeStatus.DELIVERED, NoticeStatus.CANCELLED)
    check_transition(NoticeStatus.DELIVERED, NoticeStatus.RETRACTED)


def test_a_notice_withdrawn_while_sending_is_cancelled_directly() -> None:
    # Nothing was delivered yet: the withdrawal cancels it without a detour through sealed.
    check_transition(NoticeStatus.SENDING, NoticeStatus.CANCELLED)
