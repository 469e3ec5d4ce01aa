"""Who is e-mailed when a notice goes wrong, and what the e-mail says: pure rules, no I/O.

Three events reach people by e-mail as well as on the admin dashboard:

- ``overdue_deputies``: a notice not acknowledged by the setting's day start; its deputies
  are asked to open and acknowledge it;
- ``overdue_admins``: the same notice still unacknowledged an hour later; the admins are
  asked to contact the setting;
- ``delivery_failed``: a recipient's delivery failed; the setting's other recipients are
  asked to open the notice in their inbox, and the admins to make sure somebody has it.

E-mail is not sealed, so an e-mail carries no personal data: no child, no date of birth,
no address, no incident details, not even the setting (that a school has a notice is
itself sensitive). It carries the notice id and a link to where a signed-in person opens
it. Each person is e-mailed once per notice and event: :func:`unsent` drops addresses
already on record (compared case-insensitively).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

MailKind = Literal["overdue_deputies", "overdue_admins", "delivery_failed"]
Audience = Literal["recipient", "admin"]
ALL_AREAS: Final = "all"

POINTER_SUBJECT: Final = "Operation Encompass: a notice is waiting for you"


@dataclass(frozen=True, slots=True)
class Person:
    """A Key Adult, deputy or holiday contact of the setting."""

    key_adult_id: str
    role: str
    email: str


@dataclass(frozen=True, slots=True)
class AdminContact:
    """An active admin; ``email`` None when none was registered."""

    admin_id: str
    area: str
    email: str | None


@dataclass(frozen=True, slots=True)
class MailTo:
    """One e-mail to send: to whom, and in which voice."""

    audience: Audience
    recipient_id: str
    address: str


@dataclass(frozen=True, slots=True)
class MailText:
    subject: str
    body: str
    link: str


def inbox_link(portal_url: str, notice_id: str) -> str:
    """Where a Key Adult opens the notice in the browser."""
    return f"{portal_url.rstrip('/')}/inbox/notices/{notice_id}"


def admin_link(portal_url: str) -> str:
    """The admin dashboard, which names the setting behind a sign-in."""
    return f"{portal_url.rstrip('/')}/admin"


def _admins(admins: Iterable[AdminContact], setting_area: str | None) -> list[MailTo]:
    """Admins with an address whose area covers the setting: ``all``, or the setting's
    own local authority when the directory names one."""
    return [
        MailTo("admin", a.admin_id, a.email)
        for a in admins
        if a.email
        and (a.area == ALL_AREAS or (setting_area is not None and a.area == setting_area))
    ]


def overdue_deputies(people: Iterable[Person]) -> list[MailTo]:
    """The setting's deputies (a holiday contact or the Key Adult is not asked twice)."""
    return [MailTo("recipient", p.key_adult_id, p.email) for p in people if p.role == "deputy"]


def overdue_admins(admins: Iterable[AdminContact], setting_area: str | None) -> list[MailTo]:
    return _admins(admins, setting_area)


def delivery_failed(
    recipients: Iterable[Person],
    failed_key_adult_id: str | None,
    admins: Iterable[AdminContact],
    setting_area: str | None,
) -> list[MailTo]:
    """The notice's recipients at the setting other than the one whose delivery failed
    (all of them when the notice failed as a whole: ``failed_key_adult_id`` None), then
    the admins."""
    others = [
        MailTo("recipient", p.key_adult_id, p.email)
        for p in recipients
        if p.key_adult_id != failed_key_adult_id
    ]
    return others + _admins(admins, setting_area)


def unsent(mails: Iterable[MailTo], already: Iterable[str]) -> list[MailTo]:
    """``mails`` without empty addresses, those already on record, and repeats."""
    seen = {address.strip().lower() for address in already}
    kept = []
    for mail in mails:
        key = mail.address.strip().lower()
        if key and key not in seen:
            seen.add(key)
            kept.append(mail)
    return kept


def compose(kind: MailKind, audience: Audience, notice_id: str, portal_url: str) -> MailText:
    """The e-mail for one event and audience: the notice id and a link, nothing else."""
    if audience == "admin":
        link = admin_link(portal_url)
        if kind == "delivery_failed":
            subject = "Operation Encompass: a notice could not be delivered"
            what = (
                "A delivery of this notice failed. Make sure the setting has it by another\n"
                "route before the school day starts; the dashboard names the setting."
            )
        else:
            subject = "Operation Encompass: a notice is still not acknowledged"
            what = (
                "This notice is still not acknowledged an hour after its deputies were\n"
                "told. Contact the setting; the dashboard names it."
            )
        return MailText(subject, _body(what, notice_id, link, "Sign in to the dashboard"), link)
    link = inbox_link(portal_url, notice_id)
    if kind == "delivery_failed":
        subject = "Operation Encompass: please open a notice for your setting"
        what = (
            "A notice for your setting could not be delivered to one of its recipients.\n"
            "Please open it in your Encompass inbox and acknowledge it."
        )
    else:
        subject = "Operation Encompass: a notice needs acknowledging now"
        what = (
            "A notice for your setting was not acknowledged by the start of the school\n"
            "day. As a deputy, please open it in your Encompass inbox and acknowledge it."
        )
    return MailText(subject, _body(what, notice_id, link, "Open it"), link)


def pointer_text(notice_id: str, portal_url: str) -> MailText:
    """The pointer sent at release to a Key Adult who receives by e-mail."""
    link = inbox_link(portal_url, notice_id)
    what = (
        "A notice is waiting for you in Encompass. Open it in your Encompass inbox\n"
        "(in the browser you set up), then acknowledge it."
    )
    return MailText(POINTER_SUBJECT, _body(what, notice_id, link, "Open it"), link)


def _body(what: str, notice_id: str, link: str, verb: str) -> str:
    # The link on a line of its own: short enough that mail programs show it whole.
    return (
        f"{what}\n\n"
        f"Notice: {notice_id}\n"
        f"{verb}:\n{link}\n\n"
        "This e-mail deliberately says nothing about the notice itself.\n"
    )
