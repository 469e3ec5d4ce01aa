"""The demo's mail server: an in-process SMTP receiver (aiosmtpd) on a free loopback port.

It stands in for the Key Adults' and admins' mailboxes: the dispatcher sends its pointers,
overdue and failed-delivery e-mails to it over real SMTP, and the demo prints each one
(recipient, subject, link) and hands pointers to the demo's Key Adults, who follow them.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session

_LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    link: str


@dataclass
class DemoMailbox:
    """Every e-mail received, in order; ``on_mail`` is told of each as it arrives."""

    received: list[Mail] = field(default_factory=list)
    on_mail: Callable[[Mail], None] | None = None
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self), "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's hook: one message, for one or more recipients."""
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        subject, text = "", ""
        if isinstance(message, EmailMessage):
            subject = str(message["Subject"] or "")
            body = message.get_body(preferencelist=("plain",))
            text = str(body.get_content()) if body is not None else ""
        found = _LINK.search(text)
        for to in envelope.rcpt_tos:
            mail = Mail(to, subject, found.group(0) if found else "")
            self.received.append(mail)
            if self.on_mail is not None:
                self.on_mail(mail)
        return "250 OK"
