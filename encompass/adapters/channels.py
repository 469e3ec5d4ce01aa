"""The delivery channels' port: what the delivery handler needs from a webhook poster and
from a mail sender, and the transport-free results they answer with.

Two adapters implement it: :mod:`encompass.adapters.webhook` and
:mod:`encompass.adapters.smtp`. The handler (``services/delivery/attempt.py``) sees these
types only, never aiohttp's or aiosmtplib's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from encompass.domain.status import DeliveryOutcome


@dataclass(frozen=True, slots=True)
class PostResult:
    """How a POST ended; ``detail`` is a status code or an error class, never data."""

    outcome: DeliveryOutcome  # delivered, retry or failed
    detail: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """How sending ended; ``detail`` is an SMTP code or an error class, never data."""

    outcome: DeliveryOutcome  # sent, retry or failed
    detail: str


class WebhookPort(Protocol):
    async def post(
        self,
        url: str,
        body: bytes,
        *,
        envelope_id: str,
        kind: str,
        hmac_key: bytes | None,
        timestamp: int,
    ) -> PostResult: ...


class MailPort(Protocol):
    async def send_pointer(self, to: str, notice_id: str) -> SendResult: ...
