"""The Key Adult's portal: their credentials, and the sealed envelopes addressed to them.

A Key Adult sees only envelopes sealed to them — so a setting sees only its own notices —
and only once they were sent: an envelope sealed ahead of its release time, or one whose
notice was cancelled before sending, is not shown. Handing an envelope over is delivery:
the first time one is served it gets ``delivered_at`` / ``delivered_by="portal"`` and a
notice still ``sending`` becomes ``delivered``. Every read is audited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import KeyAdultRow, Notice, SealedEnvelope
from encompass.adapters.webhook import WEBHOOK_KEY_PURPOSE, signature_key
from encompass.clock import Clock
from encompass.domain.status import WITHHELD, NoticeStatus, values
from encompass.services.access.credentials import CredentialError, hash_token, new_token
from encompass.services.receiving.device_keys import DIRECTORY_DEVICE
from encompass.services.records import audit
from encompass.services.records.at_rest import keys_of
from encompass.services.records.retention import PURGED_BODY
from encompass.services.scheduling.notices import transition

# An envelope once handed over stays visible to its Key Adult whatever happens next, until
# retention clears it.
_SENT: Final = and_(
    or_(Notice.status.not_in(values(WITHHELD)), SealedEnvelope.delivered_at.is_not(None)),
    SealedEnvelope.body != PURGED_BODY,
)
MAX_LIST: Final = 500


@dataclass(frozen=True)
class KeyAdultCredentials:
    """Shown once. The token is stored as its SHA-256 hash; the webhook secret's HMAC key
    (SHA-256 of the secret) only sealed under the data key file (``schemas/webhook.md``)."""

    key_adult_id: str
    token: str
    webhook_secret: str


async def issue_key_adult_credentials(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    key_adult_id: str,
    *,
    actor: str = "admin:cli",
) -> KeyAdultCredentials:
    """A new API token and webhook secret for a Key Adult, replacing (so revoking) any
    earlier pair. CredentialError (one line) for an unknown Key Adult. Audited."""
    token, secret = new_token("keyadult"), new_token("whsec")
    async with sessions.begin() as session:
        row = await session.get(KeyAdultRow, key_adult_id, with_for_update=True)
        if row is None:
            raise CredentialError(f"no Key Adult {key_adult_id!r} in the directory")
        replaced = row.token_hash is not None
        row.token_hash = hash_token(token)
        row.webhook_key_sealed = keys_of(session).seal_secret(
            signature_key(secret), purpose=WEBHOOK_KEY_PURPOSE, subject=key_adult_id
        )
        await audit.record(
            session,
            actor=actor,
            action="key_adult.credentials_issued",
            subject=f"key_adult:{key_adult_id}",
            detail={"replaced_earlier": replaced},
            at=clock.now(),
        )
    return KeyAdultCredentials(key_adult_id, token, secret)


@dataclass(frozen=True)
class ServedEnvelope:
    """One envelope as the portal serves it."""

    notice_id: str
    status: str
    kind: str  # notice | retraction
    created_at: datetime
    delivered_at: datetime
    envelope: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "status": self.status,
            "kind": self.kind,
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat(),
            "envelope": self.envelope,
        }


def _deliver(
    session: AsyncSession, envelope: SealedEnvelope, notice: Notice, now: datetime
) -> bool:
    """Mark the handover; True when this was the first time."""
    if envelope.delivered_at is not None:
        return False
    envelope.delivered_at, envelope.delivered_by = now, "portal"
    if envelope.kind == "notice" and notice.status == NoticeStatus.SENDING:
        transition(
            session,
            notice,
            NoticeStatus.DELIVERED,
            at=now,
            cause=f"fetched from the portal by key_adult:{envelope.key_adult_id}",
        )
    return True


def _served(envelope: SealedEnvelope, notice: Notice) -> ServedEnvelope:
    assert envelope.delivered_at is not None
    return ServedEnvelope(
        notice.notice_id,
        notice.status,
        envelope.kind,
        envelope.created_at,
        envelope.delivered_at,
        json.loads(envelope.body),
    )


async def list_envelopes(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    key_adult_id: str,
    *,
    limit: int = 100,
    device_id: str = DIRECTORY_DEVICE,
) -> list[ServedEnvelope]:
    """The newest ``limit`` sent envelopes sealed to this Key Adult (notices and
    retractions), each marked delivered if it was not yet. Audited."""
    now = clock.now()
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                select(SealedEnvelope, Notice)
                .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
                .where(
                    SealedEnvelope.key_adult_id == key_adult_id,
                    SealedEnvelope.device_id == device_id,
                    _SENT,
                )
                .order_by(SealedEnvelope.created_at.desc(), SealedEnvelope.envelope_id)
                .limit(max(1, min(limit, MAX_LIST)))
                .with_for_update(of=Notice)
            )
        ).all()
        first = sum(_deliver(session, envelope, notice, now) for envelope, notice in rows)
        await audit.record(
            session,
            actor=f"key_adult:{key_adult_id}",
            action="notices.list",
            subject=f"key_adult:{key_adult_id}",
            detail={
                "count": len(rows),
                "first_fetches": first,
                "notice_ids": sorted({n.notice_id for _, n in rows}),
            },
            at=now,
        )
        return [_served(envelope, notice) for envelope, notice in rows]


async def fetch_envelope(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    key_adult_id: str,
    notice_id: str,
    *,
    kind: str = "notice",
    device_id: str = DIRECTORY_DEVICE,
) -> ServedEnvelope | None:
    """This Key Adult's envelope of ``kind`` (``notice`` or ``retraction``) for the notice,
    marked delivered if it was not yet; None when there is none they may see — another
    setting's notice looks exactly like a notice that does not exist. Audited."""
    now = clock.now()
    async with sessions.begin() as session:
        row = (
            await session.execute(
                select(SealedEnvelope, Notice)
                .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
                .where(
                    SealedEnvelope.key_adult_id == key_adult_id,
                    SealedEnvelope.notice_id == notice_id,
                    SealedEnvelope.kind == kind,
                    SealedEnvelope.device_id == device_id,
                    _SENT,
                )
                .with_for_update(of=Notice)
            )
        ).one_or_none()
        if row is None:
            # Recorded too: a Key Adult probing for notices that are not theirs is news.
            await audit.record(
                session,
                actor=f"key_adult:{key_adult_id}",
                action="notice.read_refused",
                subject=f"notice:{notice_id[:64]}",
                detail={"envelope_kind": kind},
                at=now,
            )
            return None
        envelope, notice = row
        first = _deliver(session, envelope, notice, now)
        await audit.record(
            session,
            actor=f"key_adult:{key_adult_id}",
            action="notice.read",
            subject=f"notice:{notice_id}",
            detail={"envelope_kind": kind, "first_fetch": first, "device_id": device_id},
            at=now,
        )
        return _served(envelope, notice)
