"""Key Adults' devices on PostgreSQL and SQLite: one-time set-up links, enrolment, sign-in
by a signed challenge, revocation at once, sealing to every device, and the settings whose
recipients hold no device that can open a notice."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, time, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import AuditEntry, KeyAdultRow, SettingRow
from encompass.adapters.key_files import generate_key_adult_keys, public_keys_pem
from encompass.clock import Clock
from encompass.domain.envelope import NoticeContent, open_sealed, parse_envelope
from encompass.services.access.web_sessions import DEFAULT_TTL, KEY_ADULT
from encompass.services.delivery.sealing import KeyCache, seal_to
from encompass.services.receiving import devices

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class Browser:
    """What a browser makes and keeps: its two key pairs."""

    def __init__(self) -> None:
        self.opening = X25519PrivateKey.generate()
        self.signing = Ed25519PrivateKey.generate()
        self.x25519 = base64.b64encode(self.opening.public_key().public_bytes_raw()).decode()
        self.ed25519 = base64.b64encode(self.signing.public_key().public_bytes_raw()).decode()

    def enrol_signature(self, token: str) -> str:
        invite = hashlib.sha256(token.encode()).hexdigest()
        payload = devices.enrol_payload(invite, self.x25519, self.ed25519)
        return base64.b64encode(self.signing.sign(payload)).decode()

    async def enrol(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, token: str
    ) -> devices.Enrolled:
        return await devices.enrol(
            sessions,
            clock,
            token,
            x25519=self.x25519,
            ed25519=self.ed25519,
            label="test browser",
            signature=self.enrol_signature(token),
        )

    async def sign_in(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, device_id: str
    ) -> devices.SignedIn:
        challenge = await devices.new_challenge(sessions, clock)
        signature = self.signing.sign(devices.sign_in_payload(challenge, device_id))
        return await devices.sign_in(
            sessions,
            clock,
            device_id=device_id,
            challenge=challenge,
            signature=base64.b64encode(signature).decode(),
        )


async def add_setting(
    sessions: async_sessionmaker[AsyncSession], setting_id: str, *, readable_key: bool
) -> KeyAdultRow:
    """A setting with one Key Adult, whose directory key can or cannot be read."""
    pem = public_keys_pem(generate_key_adult_keys(False).public_keys()).decode()
    person = KeyAdultRow(
        key_adult_id=f"{setting_id}-KA",
        setting_id=setting_id,
        name="Key Adult",
        role="key_adult",
        email="ka@example.org",
        webhook_url=None,
        public_key_pem=pem if readable_key else "not a key",
        token_hash=None,
    )
    async with sessions.begin() as session:
        session.add(
            SettingRow(
                setting_id=setting_id,
                name="A school",
                kind="school",
                nation="england",
                postcode="TF3 4NT",
                day_starts=time(8, 40),
                day_ends=time(15, 20),
                dispatch_at=time(7, 30),
                calendar_id="none",
                holiday_policy="hold",
            )
        )
        await session.flush()
        session.add(person)
    return person


async def test_a_set_up_link_works_once_and_not_after_it_expires(
    sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    clock = Clock(NOW)
    person = await add_setting(sessions, f"{prefix}S1", readable_key=True)
    link = await devices.invite(sessions, clock, person.key_adult_id, valid_hours=2)
    assert link.url("https://encompass.example/").startswith("https://encompass.example/enrol/")
    # A bad proof of possession leaves the link usable
    laptop = Browser()
    with pytest.raises(devices.DeviceError) as refused:
        await devices.enrol(
            sessions,
            clock,
            link.token,
            x25519=laptop.x25519,
            ed25519=laptop.ed25519,
            label="x",
            signature=Browser().enrol_signature(link.token),
        )
    assert refused.value.code == "bad_signature"
    enrolled = await laptop.enrol(sessions, clock, link.token)
    assert enrolled.key_adult_id == person.key_adult_id
    # Used twice: refused
    with pytest.raises(devices.DeviceError) as twice:
        await Browser().enrol(sessions, clock, link.token)
    assert twice.value.status == 410
    # Expired: refused, like an unknown link
    late = await devices.invite(sessions, clock, person.key_adult_id, valid_hours=1)
    clock.advance(timedelta(hours=1, seconds=1))
    with pytest.raises(devices.DeviceError) as expired:
        await Browser().enrol(sessions, clock, late.token)
    assert expired.value.status == 410
    with pytest.raises(devices.DeviceError):
        await devices.invite(sessions, clock, f"{prefix}nobody")
    listed = await devices.list_devices(sessions, person.key_adult_id)
    assert [d.device_id for d in listed] == ["directory", enrolled.device_id]
    async with sessions() as session:
        actions = set(
            await session.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.subject.in_(
                        [f"key_adult:{person.key_adult_id}", f"device:{enrolled.device_id}"]
                    )
                )
            )
        )
    assert {"device.invited", "device.enrolled"} <= actions


async def test_a_device_signs_in_with_its_key_and_a_revoked_one_is_refused_at_once(
    sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    clock = Clock(NOW)
    person = await add_setting(sessions, f"{prefix}S2", readable_key=True)
    link = await devices.invite(sessions, clock, person.key_adult_id)
    laptop = Browser()
    device_id = (await laptop.enrol(sessions, clock, link.token)).device_id
    signed = await laptop.sign_in(sessions, clock, device_id)
    held = await devices.current(sessions, clock, signed.cookie)
    assert held is not None and held.subject_id == person.key_adult_id
    # Another key's signature, or a challenge used twice, opens nothing
    challenge = await devices.new_challenge(sessions, clock)
    forged = Browser().signing.sign(devices.sign_in_payload(challenge, device_id))
    with pytest.raises(devices.DeviceError):
        await devices.sign_in(
            sessions,
            clock,
            device_id=device_id,
            challenge=challenge,
            signature=base64.b64encode(forged).decode(),
        )
    with pytest.raises(devices.DeviceError) as reused:
        await devices.sign_in(
            sessions,
            clock,
            device_id=device_id,
            challenge=challenge,
            signature=base64.b64encode(forged).decode(),
        )
    assert reused.value.code == "bad_challenge"
    # Sessions end when they expire and when signed out
    second = await laptop.sign_in(sessions, clock, device_id)
    await devices.sign_out(sessions, clock, second.cookie)
    assert await devices.current(sessions, clock, second.cookie) is None
    later = Clock(NOW + DEFAULT_TTL[KEY_ADULT] + timedelta(minutes=1))
    assert await devices.current(sessions, later, signed.cookie) is None
    # Revoked: the open session is refused at once, and it cannot sign in again
    await devices.revoke_device(sessions, clock, device_id)
    assert await devices.current(sessions, clock, signed.cookie) is None
    with pytest.raises(devices.DeviceError) as revoked:
        await laptop.sign_in(sessions, clock, device_id)
    assert revoked.value.code == "sign_in_refused"
    with pytest.raises(devices.DeviceError):
        await devices.revoke_device(sessions, clock, "directory")


async def test_a_notice_is_sealed_to_every_device_not_revoked(
    sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    clock = Clock(NOW)
    person = await add_setting(sessions, f"{prefix}S3", readable_key=True)
    laptop, phone = Browser(), Browser()
    laptop_id = (
        await laptop.enrol(
            sessions, clock, (await devices.invite(sessions, clock, person.key_adult_id)).token
        )
    ).device_id
    phone_id = (
        await phone.enrol(
            sessions, clock, (await devices.invite(sessions, clock, person.key_adult_id)).token
        )
    ).device_id
    await devices.revoke_device(sessions, clock, phone_id)
    content = NoticeContent.model_validate(
        {
            "notice_id": "N-1",
            "setting_id": person.setting_id,
            "version": 1,
            "child": {"given_name": "Ada", "family_name": "Byron", "date_of_birth": None},
            "police_reference": "R1",
            "occurred_at": "2026-12-06T22:00:00+00:00",
            "location": "home",
            "present": True,
            "circumstances": "c",
            "police_actions": "p",
            "officer": {"name": "PC", "contact": "101"},
            "guidance": "g",
        }
    )
    keys = KeyCache()
    async with sessions() as session:
        await keys.load_devices(session, [person])
    made = seal_to(content, [person], keys=keys, signing_key=Ed25519PrivateKey.generate(), now=NOW)
    assert [e.device_id for e in made.envelopes] == ["directory", laptop_id]
    # One delivery per person, whatever their number of devices
    assert len(made.outbox) == 1 and made.outbox[0].envelope_id == made.envelopes[0].envelope_id
    opened = open_sealed(
        parse_envelope(made.envelopes[1].body), private_key=laptop.opening, service_public_key=None
    )
    assert opened.child.given_name == "Ada"


async def test_a_setting_whose_recipients_cannot_open_notices_is_found(
    sessions: async_sessionmaker[AsyncSession], prefix: str
) -> None:
    clock = Clock(NOW)
    fine = await add_setting(sessions, f"{prefix}S4", readable_key=True)
    blind = await add_setting(sessions, f"{prefix}S5", readable_key=False)

    async def without() -> list[str]:
        async with sessions() as session:
            return await devices.settings_without_openable_device(session)

    found = await without()
    assert blind.setting_id in found and fine.setting_id not in found
    link = await devices.invite(sessions, clock, blind.key_adult_id)
    device_id = (await Browser().enrol(sessions, clock, link.token)).device_id
    assert blind.setting_id not in await without()
    await devices.revoke_device(sessions, clock, device_id)
    assert blind.setting_id in await without()
