"""E-mail pointers: "a notice is waiting for you", and where — never what.

The message carries no personal data at all: not the child, not the setting, not the
incident; only the notice id and a link to the portal, where the Key Adult signs in and
opens the sealed notice with their own key. E-mail is not end-to-end sealed, so nothing
that needs sealing goes into it.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Final

import aiosmtplib

from encompass.adapters.channels import SendResult
from encompass.domain.status import DeliveryOutcome

SUBJECT: Final = "Operation Encompass: a notice is waiting for you"


def pointer_message(*, sender: str, to: str, notice_id: str, portal_url: str) -> EmailMessage:
    """The pointer e-mail for one notice: its id and link, nothing else."""
    link = f"{portal_url.rstrip('/')}/v1/notices/{notice_id}"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = SUBJECT
    message["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(
        "A notice is waiting for you in Encompass.\n\n"
        f"Notice: {notice_id}\n"
        f"Open it: {link}\n\n"
        "This e-mail deliberately says nothing about the notice itself. Sign in with\n"
        "your Encompass credentials, open the notice with your own key (for example\n"
        "with `encompass inbox`), then acknowledge it.\n"
    )
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
    """Sends pointer e-mails through one SMTP server (STARTTLS when it offers it)."""

    def __init__(
        self, *, host: str, port: int, sender: str, portal_url: str, timeout: float = 30.0
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._portal_url, self._timeout = portal_url, timeout

    async def send_pointer(self, to: str, notice_id: str) -> SendResult:
        """Send the pointer for ``notice_id`` to ``to`` once and classify the outcome."""
        message = pointer_message(
            sender=self._sender, to=to, notice_id=notice_id, portal_url=self._portal_url
        )
        try:
            await aiosmtplib.send(
                message, hostname=self._host, port=self._port, timeout=self._timeout
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return classify_error(exc)
        return SendResult(DeliveryOutcome.SENT, "SMTP 250")
