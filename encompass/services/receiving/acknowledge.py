"""A Key Adult's acknowledgement: a signed receipt nobody can forge and nobody can deny.

The Key Adult signs (Ed25519) exactly one envelope's hash, the kind of answer and the reply
(``ack_payload`` in ``domain/envelope.py``). We check the signature against the key the
directory holds for them and the hash against the envelope we stored, then keep who, when,
what and the signature itself, so the receipt can be re-verified by anyone later.

``received`` and ``child_absent`` acknowledge the notice. ``not_our_pupil`` sends it back to
the review queue: the child's reasons say why, and the force gets an alert, because a child
the setting does not know still has to be told about to someone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    Acknowledgement,
    Alert,
    Child,
    KeyAdultDevice,
    KeyAdultRow,
    Notice,
    SealedEnvelope,
)
from encompass.adapters.key_files import KeyFileError, load_public_key_bundle
from encompass.clock import Clock
from encompass.domain.envelope import AckKind, EnvelopeError, verify_ack
from encompass.domain.status import WITHHELD, NoticeStatus, values
from encompass.services.admin.alerts import close_answered
from encompass.services.receiving.device_keys import DIRECTORY_DEVICE
from encompass.services.receiving.device_keys import signing_key as device_signing_key
from encompass.services.records import audit
from encompass.services.records.at_rest import seal_reply
from encompass.services.scheduling.notices import transition


class AckRefused(Exception):
    """The acknowledgement was not recorded. ``code`` is stable, ``status`` the HTTP status
    that fits (404, 400, 403 or 409) and the message one line without personal data."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class AckRecorded:
    ack_id: str
    notice_id: str
    key_adult_id: str
    kind: str
    at: datetime
    notice_status: str


def not_our_pupil_reason(setting_id: str) -> str:
    """The reason added to the child's record when a setting disowns the child."""
    return f"{setting_id}: the Key Adult says the child is not their pupil"


async def _load(
    session: AsyncSession, key_adult_id: str, notice_id: str, device_id: str
) -> tuple[SealedEnvelope, Notice]:
    row = (
        await session.execute(
            select(SealedEnvelope, Notice)
            .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
            .where(
                SealedEnvelope.key_adult_id == key_adult_id,
                SealedEnvelope.notice_id == notice_id,
                SealedEnvelope.kind == "notice",
                SealedEnvelope.device_id == device_id,
                or_(
                    Notice.status.not_in(values(WITHHELD)), SealedEnvelope.delivered_at.is_not(None)
                ),
            )
            # One acknowledgement per notice, even when the Key Adult and a deputy answer at
            # once: the second waits here and then finds the first.
            .with_for_update(of=Notice)
        )
    ).one_or_none()
    if row is None:
        raise AckRefused(404, "not_found", "no such notice for this Key Adult")
    return row


async def _signing_key(
    session: AsyncSession, key_adult: KeyAdultRow, device_id: str
) -> Ed25519PublicKey:
    """The Ed25519 key of the device that opened the envelope: the directory key, or a
    browser's (refused at once when revoked)."""
    if device_id != DIRECTORY_DEVICE:
        device = await session.get(KeyAdultDevice, device_id)
        if device is None or device.key_adult_id != key_adult.key_adult_id:
            raise AckRefused(404, "not_found", "no such notice for this Key Adult")
        if device.revoked_at is not None:
            raise AckRefused(403, "device_revoked", "this device was revoked")
        return device_signing_key(device)
    try:
        return load_public_key_bundle(key_adult.public_key_pem).signing
    except KeyFileError:
        raise AckRefused(
            409,
            "no_ack_key",
            "the directory holds no acknowledgement (Ed25519) "
            "key for this Key Adult; register their public.pem again",
        ) from None


def _check_signature(
    public: Ed25519PublicKey,
    signature: str,
    *,
    notice_id: str,
    envelope_hash: str,
    kind: AckKind,
    reply: str | None,
) -> None:
    try:
        verify_ack(
            public,
            signature,
            notice_id=notice_id,
            envelope_hash=envelope_hash,
            kind=kind,
            reply=reply,
        )
    except EnvelopeError:
        raise AckRefused(
            403,
            "bad_signature",
            "the acknowledgement's signature does not verify with this Key Adult's registered key",
        ) from None


async def acknowledge(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    key_adult_id: str,
    *,
    notice_id: str,
    kind: AckKind,
    reply: str | None,
    envelope_hash: str,
    signature: str,
    device_id: str = DIRECTORY_DEVICE,
) -> AckRecorded:
    """Verify and record one acknowledgement, moving the notice on; AckRefused otherwise.

    Refused: a notice not sent to this Key Adult (404), a hash that is not the stored
    envelope's (400), a signature that does not verify (403), a notice already answered or
    no longer answerable — retracted, failed, back in review (409).
    """
    now = clock.now()
    async with sessions.begin() as session:
        envelope, notice = await _load(session, key_adult_id, notice_id, device_id)
        earlier = await session.scalar(
            select(Acknowledgement)
            .where(Acknowledgement.notice_id == notice_id)
            .order_by(Acknowledgement.at)
            .limit(1)
        )
        if earlier is not None:
            raise AckRefused(
                409,
                "already_acknowledged",
                f"the notice was already answered ({earlier.kind}) at {earlier.at.isoformat()}",
            )
        if envelope_hash != envelope.envelope_hash:
            raise AckRefused(
                400,
                "envelope_mismatch",
                "envelope_hash is not the hash of the "
                "envelope sent to this Key Adult for this notice",
            )
        key_adult = await session.get(KeyAdultRow, key_adult_id)
        assert key_adult is not None  # the envelope's foreign key guarantees it
        _check_signature(
            await _signing_key(session, key_adult, device_id),
            signature,
            notice_id=notice_id,
            envelope_hash=envelope_hash,
            kind=kind,
            reply=reply,
        )
        who = f"key_adult:{key_adult_id}"
        if notice.status == NoticeStatus.SENDING:
            # They hold the envelope, so it was delivered, whatever the transport reported.
            transition(
                session,
                notice,
                NoticeStatus.DELIVERED,
                at=now,
                cause=f"acknowledged by {who}, so delivered",
            )
        if notice.status != NoticeStatus.DELIVERED:
            raise AckRefused(
                409,
                "not_acknowledgeable",
                f"the notice is {notice.status} and can no longer be answered",
            )
        ack_id = str(uuid.uuid4())
        ack = Acknowledgement(
            ack_id=ack_id,
            notice_id=notice_id,
            key_adult_id=key_adult_id,
            kind=kind,
            reply=await seal_reply(
                session, incident_id=notice.incident_id, ack_id=ack_id, reply=reply, now=now
            ),
            envelope_hash=envelope_hash,
            signature=signature,
            at=now,
        )
        session.add(ack)
        # Answered: the overdue alerts about it need nobody any more.
        await close_answered(session, notice_id, who, now)
        if kind is AckKind.NOT_OUR_PUPIL:
            await _return_to_review(session, notice, who, now)
        else:
            transition(
                session,
                notice,
                NoticeStatus.ACKNOWLEDGED,
                at=now,
                cause=f"{kind} acknowledged by {who}",
            )
        await audit.record(
            session,
            actor=who,
            action="notice.acknowledged",
            subject=f"notice:{notice_id}",
            detail={
                "kind": kind,
                "has_reply": reply is not None,
                "envelope_hash": envelope_hash,
                "ack_id": ack.ack_id,
                "device_id": device_id,
            },
            at=now,
        )
        return AckRecorded(ack.ack_id, notice_id, key_adult_id, kind, now, notice.status)


async def _return_to_review(session: AsyncSession, notice: Notice, who: str, now: datetime) -> None:
    reason = not_our_pupil_reason(notice.setting_id)
    transition(session, notice, NoticeStatus.REVIEW, at=now, cause=f"{who}: {reason}")
    child = await session.get(Child, notice.child_id, with_for_update=True)
    if child is not None:
        # Reassigned, not appended: a JSON column does not notice in-place changes.
        child.reasons = [*child.reasons, reason]
    session.add(
        Alert(
            notice_id=notice.notice_id,
            kind=AckKind.NOT_OUR_PUPIL,
            audience="force",
            message=f"setting {notice.setting_id} says the child of notice "
            f"{notice.notice_id} is not their pupil; the notice is back "
            "in the review queue",
            created_at=now,
        )
    )
