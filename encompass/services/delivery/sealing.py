"""Sealing a notice (or its retraction) to its recipients and queueing it for delivery.

Shared by the dispatcher (release), the sweeper (deputies on escalation) and withdrawal
(retractions). Each envelope row gets its outbox entry in the caller's transaction, so a
notice is never marked sealed without its deliveries, nor deliveries queued without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import (
    Child,
    IncidentVersion,
    KeyAdultRow,
    Notice,
    OutboxEntry,
    SealedEnvelope,
)
from encompass.adapters.key_files import KeyFileError, load_public_key_bundle
from encompass.domain.directory import KeyAdultRole
from encompass.domain.envelope import NoticeContent, RecipientPublicKey, seal_hashed
from encompass.domain.incident import IncidentReport
from encompass.domain.queued import DeliveryChannel
from encompass.services.delivery.notice_content import parse_stored_report
from encompass.services.receiving.device_keys import DIRECTORY_DEVICE, DeviceKey, active_device_keys
from encompass.services.records.at_rest import DataUnavailable, open_payload, preload_data_keys

if TYPE_CHECKING:
    from sqlalchemy import Table

log = structlog.get_logger()


# Who a notice goes to, by Notice.recipient (set by the release rule).
ROLES_FOR: dict[str, frozenset[KeyAdultRole]] = {
    "key_adults": frozenset({KeyAdultRole.KEY_ADULT, KeyAdultRole.DEPUTY}),
    "holiday_contact": frozenset({KeyAdultRole.HOLIDAY_CONTACT}),
}


@dataclass(frozen=True, slots=True)
class Source:
    """Where a notice's content comes from: its incident version and the child's place."""

    report: IncidentReport
    position: int


def channel_for(person: KeyAdultRow) -> DeliveryChannel:
    """A Key Adult with a webhook gets the envelope posted; the others an e-mail pointer
    to the portal (the portal serves every Key Adult whatever the channel)."""
    return "webhook" if person.webhook_url else "email"


def recipients_for(people: Iterable[KeyAdultRow], recipient: str) -> list[KeyAdultRow]:
    """The Key Adults of a setting that a notice addressed to ``recipient`` goes to."""
    roles = ROLES_FOR.get(recipient, frozenset())
    return sorted((p for p in people if p.role in roles), key=lambda p: p.key_adult_id)


async def load_sources(session: AsyncSession, notices: Sequence[Notice]) -> dict[str, Source]:
    """Each notice's incident version (parsed once per version) and child position, by
    notice id. A notice whose child or version is missing or unreadable is left out."""
    child_ids = {n.child_id for n in notices}
    if not child_ids:
        return {}
    rows = (
        await session.execute(
            select(
                Child.child_id,
                Child.position,
                IncidentVersion.version_id,
                IncidentVersion.incident_id,
                IncidentVersion.payload,
                IncidentVersion.received_at,
            )
            .join(IncidentVersion, IncidentVersion.version_id == Child.version_id)
            .where(Child.child_id.in_(child_ids))
        )
    ).all()
    await preload_data_keys(session, {incident_id for _, _, _, incident_id, _, _ in rows})
    reports: dict[str, IncidentReport] = {}
    by_child: dict[str, Source] = {}
    unreadable: set[str] = set()
    for child_id, position, version_id, incident_id, stored, received_at in rows:
        if version_id in unreadable:
            continue
        if version_id not in reports:
            try:
                payload = await open_payload(
                    session, incident_id=incident_id, version_id=version_id, stored=stored
                )
            except DataUnavailable as exc:
                # Purged or not ours: its notices are held with an alert, never sealed.
                log.error(
                    "sealing.unreadable_version", version_id=version_id, problem=type(exc).__name__
                )
                unreadable.add(version_id)
                continue
            try:
                reports[version_id] = parse_stored_report(payload, received_at)
            except ValidationError as exc:
                # Left out, so its notices are held with an alert; the rest go ahead.
                log.error(
                    "sealing.unreadable_version", version_id=version_id, errors=exc.error_count()
                )
                unreadable.add(version_id)
                continue
        by_child[child_id] = Source(reports[version_id], position)
    return {n.notice_id: by_child[n.child_id] for n in notices if n.child_id in by_child}


async def people_by_setting(
    session: AsyncSession, setting_ids: Iterable[str]
) -> dict[str, list[KeyAdultRow]]:
    """Every Key Adult, deputy and holiday contact of these settings, by setting."""
    wanted = set(setting_ids)
    found: dict[str, list[KeyAdultRow]] = {s: [] for s in wanted}
    if wanted:
        for row in await session.scalars(
            select(KeyAdultRow).where(KeyAdultRow.setting_id.in_(wanted))
        ):
            found[row.setting_id].append(row)
    return found


class KeyCache:
    """Parsed sealing keys by Key Adult, so a batch parses each PEM once, and the keys of
    their browser devices once :meth:`load_devices` has read them."""

    def __init__(self) -> None:
        self._keys: dict[str, RecipientPublicKey | None] = {}
        self._devices: dict[str, list[DeviceKey]] = {}

    async def load_devices(self, session: AsyncSession, people: Iterable[KeyAdultRow]) -> None:
        """Read the browser devices of ``people`` (those not read yet)."""
        missing = {p.key_adult_id for p in people} - self._devices.keys()
        self._devices.update(await active_device_keys(session, missing))

    def devices(self, person: KeyAdultRow) -> list[DeviceKey]:
        """The person's browser devices, not revoked (empty until loaded)."""
        return self._devices.get(person.key_adult_id, [])

    def key(self, person: KeyAdultRow) -> RecipientPublicKey | None:
        """The Key Adult's sealing key, or None (logged at error) when it cannot be read."""
        if person.key_adult_id not in self._keys:
            try:
                parsed: RecipientPublicKey | None = load_public_key_bundle(
                    person.public_key_pem
                ).recipient
            except KeyFileError as exc:
                log.error(
                    "sealing.unusable_key", key_adult_id=person.key_adult_id, problem=str(exc)
                )
                parsed = None
            self._keys[person.key_adult_id] = parsed
        return self._keys[person.key_adult_id]


@dataclass(frozen=True, slots=True)
class EnvelopeRow:
    """An ``envelopes`` row to insert: plain values, not a mapped object, so that a
    morning's thousands cost no unit-of-work bookkeeping."""

    envelope_id: str
    notice_id: str
    key_adult_id: str
    role: str
    kind: str
    body: str
    envelope_hash: str
    created_at: datetime
    device_id: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An ``outbox`` row to insert (its id is the database's)."""

    envelope_id: str
    channel: DeliveryChannel
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Sealed:
    """Envelope and outbox rows made for one notice, not yet stored."""

    envelopes: list[EnvelopeRow]
    outbox: list[OutboxRow]


@dataclass(frozen=True, slots=True)
class Target:
    """One envelope to make: a person's device and the key it opens with."""

    person: KeyAdultRow
    device_id: str
    key: RecipientPublicKey


def targets_for(people: Sequence[KeyAdultRow], keys: KeyCache) -> list[Target]:
    """Every device of each of ``people`` to seal to: the directory key when it can be
    read, then each browser not revoked, person by person."""
    targets: list[Target] = []
    for person in people:
        key = keys.key(person)
        if key is not None:
            targets.append(Target(person, DIRECTORY_DEVICE, key))
        targets.extend(Target(person, d.device_id, d.key) for d in keys.devices(person))
    return targets


def rows_for(
    content: NoticeContent,
    targets: Sequence[Target],
    sealed: Sequence[tuple[str, str]],
    now: datetime,
) -> Sealed:
    """The rows for ``content`` sealed to ``targets`` (each envelope's JSON and hash, in
    the same order), with one outbox entry per person."""
    made = Sealed([], [])
    queued: set[str] = set()
    for target, (body, digest) in zip(targets, sealed, strict=True):
        person = target.person
        row = EnvelopeRow(
            envelope_id=str(uuid.uuid4()),
            notice_id=content.notice_id,
            key_adult_id=person.key_adult_id,
            role=person.role,
            kind=content.kind,
            body=body,
            envelope_hash=digest,
            created_at=now,
            device_id=target.device_id,
        )
        made.envelopes.append(row)
        if person.key_adult_id not in queued:
            queued.add(person.key_adult_id)
            # One delivery per person: the webhook carries the directory key's envelope
            # (a receiver holds that key); the e-mail pointer leads to /inbox, where
            # every device finds its own.
            webhook = target.device_id == DIRECTORY_DEVICE and channel_for(person) == "webhook"
            made.outbox.append(OutboxRow(row.envelope_id, "webhook" if webhook else "email", now))
    return made


def seal_to(
    content: NoticeContent,
    people: Sequence[KeyAdultRow],
    *,
    keys: KeyCache,
    signing_key: Ed25519PrivateKey,
    now: datetime,
) -> Sealed:
    """Seal ``content`` to every device of each of ``people`` (see :func:`targets_for`),
    with one outbox entry per person. Pure CPU work: nothing touches the database, so a
    failure here leaves no half-made notice behind."""
    targets = targets_for(people, keys)
    return rows_for(content, targets, seal_targets(content, targets, signing_key, now), now)


def seal_targets(
    content: NoticeContent,
    targets: Sequence[Target],
    signing_key: Ed25519PrivateKey,
    now: datetime,
) -> list[tuple[str, str]]:
    """``content`` sealed to each target, in this process: (envelope JSON, its hash)."""
    sealed: list[tuple[str, str]] = []
    for target in targets:
        envelope, digest = seal_hashed(
            content,
            notice_id=content.notice_id,
            recipient_id=target.person.key_adult_id,
            recipient_public_key=target.key,
            signing_key=signing_key,
            now=now,
        )
        sealed.append((envelope.model_dump_json(), digest))
    return sealed


_ENVELOPES = cast("Table", SealedEnvelope.__table__)
_OUTBOX = cast("Table", OutboxEntry.__table__)


async def store(session: AsyncSession, sealed: Sequence[Sealed]) -> None:
    """Insert the envelopes, then their outbox entries (which refer to them), in the
    session's transaction: two multi-row statements, whatever the number of notices."""
    envelopes = [
        {
            "envelope_id": e.envelope_id,
            "notice_id": e.notice_id,
            "key_adult_id": e.key_adult_id,
            "role": e.role,
            "kind": e.kind,
            "body": e.body,
            "envelope_hash": e.envelope_hash,
            "created_at": e.created_at,
            "delivered_at": None,
            "delivered_by": None,
            "device_id": e.device_id,
        }
        for s in sealed
        for e in s.envelopes
    ]
    if not envelopes:
        return
    await session.execute(insert(_ENVELOPES), envelopes)
    await session.execute(
        insert(_OUTBOX),
        [
            {
                "envelope_id": o.envelope_id,
                "channel": o.channel,
                "created_at": o.created_at,
                "published_at": None,
            }
            for s in sealed
            for o in s.outbox
        ],
    )
