"""E-mail: pointers ("a notice is waiting for you", and where — never what) and the
overdue and failed-delivery e-mails (``domain/alert_mail.py`` writes them).

A message carries no personal data at all: not the child, not the setting, not the
incident; only the notice id and a link to the inbox (or the admin dashboard), where a
signed-in person opens the sealed notice. E-mail is not end-to-end sealed, so nothing that
needs sealing goes into it.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Final

import aiosmtplib

from encompass.adapters.channels import SendResult
from encompass.domain.alert_mail import POINTER_SUBJECT, MailText, pointer_text
from encompass.domain.status import DeliveryOutcome

SUBJECT: Final = POINTER_SUBJECT


def pointer_message(*, sender: str, to: str, notice_id: str, portal_url: str) -> EmailMessage:
    """The pointer e-mail for one notice: its id and a link to it in the inbox."""
    return mail_message(sender=sender, to=to, text=pointer_text(notice_id, portal_url))


def mail_message(*, sender: str, to: str, text: MailText) -> EmailMessage:
    """A plain-text e-mail of ``text``, with only the headers any mail needs."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = text.subject
    message["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text.body)
    return message


def classify_error(exc: Exception) -> SendResult:
    """A permanent SMTP refusal (5xx) is ``failed``; anything else (4xx, a lost or refused
    connection, a timeout) is worth another try."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return SendResult(
            DeliveryOutcome.FAILED if permanent else DeliveryOutcome.RETRY,
            f"SMTP {codes[0] if codes else '?'} recipient refused",
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendResult(
            DeliveryOutcome.FAILED if exc.code >= 500 else DeliveryOutcome.RETRY, f"SMTP {exc.code}"
        )
    return SendResult(DeliveryOutcome.RETRY, type(exc).__name__)


class SmtpSender:
    """Sends e-mails through one SMTP server (STARTTLS when it offers it)."""

    def __init__(
        self, *, host: str, port: int, sender: str, portal_url: str, timeout: float = 30.0
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._portal_url, self._timeout = portal_url, timeout

    @property
    def portal_url(self) -> str:
        """Where the links of every e-mail point (``ENCOMPASS_PORTAL_URL``)."""
        return self._portal_url

    async def send_pointer(self, to: str, notice_id: str) -> SendResult:
        """Send the pointer for ``notice_id`` to ``to`` once and classify the outcome."""
        return await self._send(
            pointer_message(
                sender=self._sender, to=to, notice_id=notice_id, portal_url=self._portal_url
            )
        )

    async def send_mail(self, to: str, text: MailText) -> SendResult:
        """Send ``text`` to ``to`` once and classify the outcome."""
        return await self._send(mail_message(sender=self._sender, to=to, text=text))

    async def _send(self, message: EmailMessage) -> SendResult:
        try:
            await aiosmtplib.send(
                message, hostname=self._host, port=self._port, timeout=self._timeout
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return classify_error(exc)
        return SendResult(DeliveryOutcome.SENT, "SMTP 250")
