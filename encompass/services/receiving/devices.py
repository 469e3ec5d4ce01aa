"""Key Adults' browser devices: the one-time set-up link, enrolment, signing in, revocation.

A browser is set up once through an ``enrol_url`` (``encompass key-adults invite``): the page
makes the browser's keys with WebCrypto, non-extractable, and sends only their public halves,
with a signature by the new Ed25519 key over the enrolment (proof that the browser holds it).
The device then signs in by signing a single-use server challenge and gets a web session
(``services/access/web_sessions.py``: the cookie kept only as its SHA-256 hash, short-lived);
every request checks the session and the device, and revoking a device closes its sessions
in the same transaction, so a revoked device is refused at once. Every change is audited.

Signed texts are the canonical JSON of ``schemas/envelope.md``:

* enrolment: ``{"format": "encompass-enrol/1", "invite": SHA-256 hex of the link's token,
  "x25519": base64, "ed25519": base64}``;
* sign-in: ``{"format": "encompass-sign-in/1", "challenge": …, "device_id": …}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    DeviceChallenge,
    DeviceInvite,
    KeyAdultDevice,
    KeyAdultRow,
    SettingRow,
)
from encompass.adapters.key_files import KeyFileError, load_public_key_bundle
from encompass.clock import Clock
from encompass.domain.envelope import canonical_bytes
from encompass.services.access.credentials import hash_token
from encompass.services.access.web_sessions import (
    KEY_ADULT,
    WebSession,
    close_session,
    close_sessions_of,
    open_session,
    session_for_cookie,
)
from encompass.services.receiving.device_keys import DIRECTORY_DEVICE, raw_key, signing_key
from encompass.services.records import audit

ENROL_FORMAT: Final = "encompass-enrol/1"
SIGN_IN_FORMAT: Final = "encompass-sign-in/1"
DEFAULT_INVITE_HOURS: Final = 72
MAX_INVITE_HOURS: Final = 24 * 14
CHALLENGE_LIFETIME: Final = timedelta(minutes=2)
# Who receives notices at a setting: the roles a notice is sealed to on a school day.
OPENING_ROLES: Final = ("key_adult", "deputy")


class DeviceError(Exception):
    """Refused; ``status`` is the HTTP status that fits, ``code`` stable, the message one
    line without personal data."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Invite:
    key_adult_id: str
    token: str
    expires_at: datetime

    def url(self, portal_url: str) -> str:
        return f"{portal_url.rstrip('/')}/enrol/{self.token}"


async def invite(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    key_adult_id: str,
    *,
    valid_hours: int = DEFAULT_INVITE_HOURS,
    actor: str = "admin:cli",
) -> Invite:
    """A one-time set-up link for a new browser of this Key Adult (shown once). Audited."""
    if not 1 <= valid_hours <= MAX_INVITE_HOURS:
        raise DeviceError(400, "bad_request", f"valid hours must be 1 to {MAX_INVITE_HOURS}")
    now = clock.now()
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=valid_hours)
    async with sessions.begin() as session:
        if await session.get(KeyAdultRow, key_adult_id) is None:
            raise DeviceError(404, "not_found", f"no Key Adult {key_adult_id!r} in the directory")
        session.add(
            DeviceInvite(
                token_hash=hash_token(token),
                key_adult_id=key_adult_id,
                created_at=now,
                expires_at=expires,
            )
        )
        await audit.record(
            session,
            actor=actor,
            action="device.invited",
            subject=f"key_adult:{key_adult_id}",
            detail={"expires_at": expires.isoformat()},
            at=now,
        )
    return Invite(key_adult_id, token, expires)


def enrol_payload(token_hash: str, x25519: str, ed25519: str) -> bytes:
    return canonical_bytes(
        {"format": ENROL_FORMAT, "invite": token_hash, "x25519": x25519, "ed25519": ed25519}
    )


def sign_in_payload(challenge: str, device_id: str) -> bytes:
    return canonical_bytes(
        {"format": SIGN_IN_FORMAT, "challenge": challenge, "device_id": device_id}
    )


def _verify(public: Ed25519PublicKey, signature: str, payload: bytes) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), payload)
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


async def _invite_row(session: AsyncSession, token: str, now: datetime) -> DeviceInvite:
    row = await session.get(DeviceInvite, hash_token(token), with_for_update=True)
    if row is None or row.used_at is not None or row.expires_at <= now:
        # One answer for all three: a probe learns nothing about which links exist.
        raise DeviceError(
            410, "invite_unusable", "this set-up link was used already, has expired or is unknown"
        )
    return row


async def check_invite(sessions: async_sessionmaker[AsyncSession], clock: Clock, token: str) -> str:
    """The Key Adult id of a usable link; DeviceError (410) otherwise."""
    async with sessions.begin() as session:
        return (await _invite_row(session, token, clock.now())).key_adult_id


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    key_adult_id: str


async def enrol(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    token: str,
    *,
    x25519: str,
    ed25519: str,
    label: str,
    signature: str,
) -> Enrolled:
    """Register a browser's public keys as a new device and use up the link. Audited."""
    now = clock.now()
    try:
        raw_key(x25519)
        public = Ed25519PublicKey.from_public_bytes(raw_key(ed25519))
    except ValueError:
        raise DeviceError(400, "bad_key", "the keys must be raw 32-byte keys in base64") from None
    async with sessions.begin() as session:
        row = await _invite_row(session, token, now)
        if not _verify(public, signature, enrol_payload(row.token_hash, x25519, ed25519)):
            raise DeviceError(403, "bad_signature", "the enrolment signature does not verify")
        device = KeyAdultDevice(
            device_id=str(uuid.uuid4()),
            key_adult_id=row.key_adult_id,
            label=label.strip()[:100] or "browser",
            x25519_public=x25519,
            ed25519_public=ed25519,
            created_at=now,
        )
        session.add(device)
        row.used_at, row.device_id = now, device.device_id
        await audit.record(
            session,
            actor=f"key_adult:{row.key_adult_id}",
            action="device.enrolled",
            subject=f"device:{device.device_id}",
            detail={"key_adult_id": row.key_adult_id, "label": device.label},
            at=now,
        )
        return Enrolled(device.device_id, row.key_adult_id)


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    key_adult_id: str
    label: str
    created_at: datetime | None
    last_seen_at: datetime | None
    revoked_at: datetime | None
    opens_notices: bool


async def list_devices(
    sessions: async_sessionmaker[AsyncSession], key_adult_id: str
) -> list[DeviceInfo]:
    """The Key Adult's devices: the directory key first, then each browser."""
    async with sessions.begin() as session:
        person = await session.get(KeyAdultRow, key_adult_id)
        if person is None:
            raise DeviceError(404, "not_found", f"no Key Adult {key_adult_id!r} in the directory")
        found = [
            DeviceInfo(
                DIRECTORY_DEVICE,
                key_adult_id,
                "key from key_adults.csv",
                None,
                None,
                None,
                _directory_key_opens(person),
            )
        ]
        rows = await session.scalars(
            select(KeyAdultDevice)
            .where(KeyAdultDevice.key_adult_id == key_adult_id)
            .order_by(KeyAdultDevice.created_at)
        )
        found.extend(
            DeviceInfo(
                d.device_id,
                d.key_adult_id,
                d.label,
                d.created_at,
                d.last_seen_at,
                d.revoked_at,
                d.revoked_at is None,
            )
            for d in rows
        )
        return found


def _directory_key_opens(person: KeyAdultRow) -> bool:
    try:
        load_public_key_bundle(person.public_key_pem)
    except KeyFileError:
        return False
    return True


async def revoke_device(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    device_id: str,
    *,
    actor: str = "admin:cli",
) -> DeviceInfo:
    """Revoke a browser at once: its sessions close, it signs in and acknowledges no more,
    and no notice is sealed to it again. Audited."""
    if device_id == DIRECTORY_DEVICE:
        raise DeviceError(
            400, "bad_request", "the directory key changes with key_adults.csv, not here"
        )
    now = clock.now()
    async with sessions.begin() as session:
        device = await session.get(KeyAdultDevice, device_id[:36], with_for_update=True)
        if device is None:
            raise DeviceError(404, "not_found", f"no device {device_id!r}")
        if device.revoked_at is None:
            device.revoked_at = now
            await close_sessions_of(session, now=now, kind=KEY_ADULT, device_id=device_id)
            await audit.record(
                session,
                actor=actor,
                action="device.revoked",
                subject=f"device:{device_id}",
                detail={"key_adult_id": device.key_adult_id},
                at=now,
            )
        return DeviceInfo(
            device.device_id,
            device.key_adult_id,
            device.label,
            device.created_at,
            device.last_seen_at,
            device.revoked_at,
            False,
        )


async def new_challenge(sessions: async_sessionmaker[AsyncSession], clock: Clock) -> str:
    """A single-use challenge for a device to sign, valid for two minutes."""
    now = clock.now()
    challenge = secrets.token_urlsafe(32)
    async with sessions.begin() as session:
        # Expired ones are cleared as we go: the table stays as small as the traffic.
        await session.execute(delete(DeviceChallenge).where(DeviceChallenge.expires_at <= now))
        session.add(DeviceChallenge(challenge=challenge, expires_at=now + CHALLENGE_LIFETIME))
    return challenge


@dataclass(frozen=True)
class SignedIn:
    cookie: str  # the session's secret, for the cookie only
    session: WebSession


async def sign_in(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    device_id: str,
    challenge: str,
    signature: str,
) -> SignedIn:
    """Open a web session for a device that signed a fresh challenge. Audited."""
    now = clock.now()
    refused = DeviceError(403, "sign_in_refused", "this browser cannot sign in")
    # Used up in a transaction of its own, so a failed attempt spends it too.
    async with sessions.begin() as session:
        used = await session.execute(
            delete(DeviceChallenge)
            .where(DeviceChallenge.challenge == challenge[:64], DeviceChallenge.expires_at > now)
            .returning(DeviceChallenge.challenge)
        )
        fresh = used.first() is not None
    if not fresh:
        raise DeviceError(403, "bad_challenge", "the challenge is unknown, used or expired")
    async with sessions.begin() as session:
        device = await session.get(KeyAdultDevice, device_id[:36])
        if device is None or device.revoked_at is not None:
            raise refused
        if not _verify(signing_key(device), signature, sign_in_payload(challenge, device_id)):
            raise refused
        device.last_seen_at = now
        key_adult_id = device.key_adult_id
        await audit.record(
            session,
            actor=f"key_adult:{key_adult_id}",
            action="device.signed_in",
            subject=f"device:{device_id}",
            at=now,
        )
    opened = await open_session(
        sessions, kind=KEY_ADULT, subject_id=key_adult_id, device_id=device_id, now=now
    )
    return SignedIn(opened.cookie, opened.session)


async def current(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, cookie: str | None
) -> WebSession | None:
    """The signed-in device behind a session cookie, or None: unknown, closed, expired, or
    its device revoked (read on every request, so revocation is immediate)."""
    if not cookie:
        return None
    now = clock.now()
    found = await session_for_cookie(sessions, cookie, kind=KEY_ADULT, now=now)
    if found is None or found.device_id is None:
        return None
    async with sessions() as session:
        device = await session.get(KeyAdultDevice, found.device_id)
    if device is None or device.revoked_at is not None:
        return None
    return found


async def sign_out(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, cookie: str | None
) -> None:
    """Close the session behind the cookie (nothing when there is none)."""
    if cookie:
        await close_session(sessions, cookie, now=clock.now())


async def settings_without_openable_device(session: AsyncSession) -> list[str]:
    """Settings none of whose Key Adults or deputies holds a device that can open a
    notice (a readable directory key or a browser not revoked): a notice due there
    would be held. Sorted setting ids; shown to admins before any notice is due."""
    people = (
        await session.scalars(select(KeyAdultRow).where(KeyAdultRow.role.in_(OPENING_ROLES)))
    ).all()
    browsers = set(
        (
            await session.scalars(
                select(KeyAdultDevice.key_adult_id).where(KeyAdultDevice.revoked_at.is_(None))
            )
        ).all()
    )
    settings = set((await session.scalars(select(SettingRow.setting_id))).all())
    covered = {
        p.setting_id for p in people if p.key_adult_id in browsers or _directory_key_opens(p)
    }
    return sorted(settings - covered)


def key_fingerprint(raw_b64: str) -> str:
    """``sha256:`` + hex of the raw key, as envelopes name keys."""
    return "sha256:" + hashlib.sha256(base64.b64decode(raw_b64)).hexdigest()
