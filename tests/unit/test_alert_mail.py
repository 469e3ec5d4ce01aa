"""Who is e-mailed when a notice is overdue or a delivery failed, and what they read."""

from __future__ import annotations

import re

import pytest

from encompass.domain.alert_mail import (
    AdminContact,
    MailKind,
    MailTo,
    Person,
    compose,
    delivery_failed,
    inbox_link,
    overdue_admins,
    overdue_deputies,
    pointer_text,
    unsent,
)
from encompass.services.access.credentials import CredentialError, admin_email

PEOPLE = [
    Person("KA-1", "key_adult", "ka1@school.example"),
    Person("DEP-1", "deputy", "dep1@school.example"),
    Person("DEP-2", "deputy", "dep2@school.example"),
    Person("HOL-1", "holiday_contact", "hol@school.example"),
]
ADMINS = [
    AdminContact("A-all", "all", "all@la.example"),
    AdminContact("A-area", "E06000020", "area@la.example"),
    AdminContact("A-none", "all", None),
]
NOTICE = "0b7c1f5e-0000-4000-8000-000000000042"


def addresses(mails: list[MailTo]) -> list[str]:
    return [m.address for m in mails]


def test_overdue_goes_to_the_deputies_only() -> None:
    assert addresses(overdue_deputies(PEOPLE)) == ["dep1@school.example", "dep2@school.example"]
    assert {m.audience for m in overdue_deputies(PEOPLE)} == {"recipient"}


def test_admins_with_an_address_whose_area_covers_the_setting() -> None:
    # Settings name no local authority yet: only admins of every area are e-mailed.
    assert addresses(overdue_admins(ADMINS, None)) == ["all@la.example"]
    assert addresses(overdue_admins(ADMINS, "E06000020")) == ["all@la.example", "area@la.example"]
    assert addresses(overdue_admins(ADMINS, "E09000001")) == ["all@la.example"]


def test_a_failed_delivery_goes_to_the_other_recipients_and_the_admins() -> None:
    recipients = PEOPLE[:3]
    mails = delivery_failed(recipients, "KA-1", ADMINS, None)
    assert addresses(mails) == ["dep1@school.example", "dep2@school.example", "all@la.example"]
    assert [m.audience for m in mails] == ["recipient", "recipient", "admin"]
    # The notice failed as a whole: every recipient is told.
    assert len(delivery_failed(recipients, None, ADMINS, None)) == 4


def test_each_address_once_and_never_again() -> None:
    mails = [
        MailTo("recipient", "DEP-1", "dep1@school.example"),
        MailTo("admin", "A-1", "DEP1@School.example "),
        MailTo("recipient", "DEP-2", "dep2@school.example"),
        MailTo("recipient", "DEP-3", ""),
    ]
    assert addresses(unsent(mails, [])) == ["dep1@school.example", "dep2@school.example"]
    assert addresses(unsent(mails, ["Dep2@school.example"])) == ["dep1@school.example"]


def test_the_pointer_links_to_the_notice_in_the_inbox() -> None:
    text = pointer_text(NOTICE, "https://encompass.example/")
    assert text.link == f"https://encompass.example/inbox/notices/{NOTICE}"
    assert inbox_link("https://encompass.example", NOTICE) == text.link
    assert text.link in text.body


KINDS: list[tuple[MailKind, str]] = [
    ("overdue_deputies", "recipient"),
    ("overdue_admins", "admin"),
    ("delivery_failed", "recipient"),
    ("delivery_failed", "admin"),
]


@pytest.mark.parametrize(("kind", "audience"), KINDS)
def test_every_e_mail_holds_the_notice_id_and_a_link_and_nothing_else(
    kind: MailKind, audience: str
) -> None:
    text = compose(kind, audience, NOTICE, "https://encompass.example")  # type: ignore[arg-type]
    expected = (
        "https://encompass.example/admin"
        if audience == "admin"
        else f"https://encompass.example/inbox/notices/{NOTICE}"
    )
    assert text.link == expected and expected in text.body
    assert NOTICE in text.body and NOTICE not in text.subject
    # The only identifier is the notice id: no other word with a digit (no setting id,
    # date, postcode or reference) in what anyone on the mail path can read.
    rest = (text.subject + " " + text.body).replace(NOTICE, "").replace(text.link, "")
    assert not re.search(r"\d", rest)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (None, None),
        ("  ", None),
        (" coordinator@la.example ", "coordinator@la.example"),
    ],
)
def test_an_admin_may_give_an_e_mail_address(given: str | None, kept: str | None) -> None:
    assert admin_email(given) == kept


@pytest.mark.parametrize(
    "bad", ["not-an-address", "a@b", "two words@la.example", "x@la.example\nBcc: y@z.example"]
)
def test_a_bad_admin_address_is_refused_in_one_line(bad: str) -> None:
    with pytest.raises(CredentialError, match="--email must be an e-mail address"):
        admin_email(bad)
