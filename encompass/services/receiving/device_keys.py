"""The sealing keys of Key Adults' browser devices, read for the sealer.

Each Key Adult has the key from ``key_adults.csv`` (the device named ``directory``) and any
browsers they set up (``services/devices.py``). A notice is sealed to every device that is
not revoked, so a lost browser is never a lost notice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import KeyAdultDevice
from encompass.domain.envelope import RecipientPublicKey

DIRECTORY_DEVICE: Final = "directory"


def raw_key(text: str) -> bytes:
    """The 32 raw bytes of a public key written in base64; ValueError otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not a canonical base64 32-byte key")
    return raw


def sealing_key(device: KeyAdultDevice) -> RecipientPublicKey:
    return RecipientPublicKey(X25519PublicKey.from_public_bytes(raw_key(device.x25519_public)))


def signing_key(device: KeyAdultDevice) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw_key(device.ed25519_public))


@dataclass(frozen=True, slots=True)
class DeviceKey:
    device_id: str
    key: RecipientPublicKey


async def active_device_keys(
    session: AsyncSession, key_adult_ids: Iterable[str]
) -> dict[str, list[DeviceKey]]:
    """The sealing keys of every browser device not revoked, by Key Adult, oldest first."""
    wanted = set(key_adult_ids)
    found: dict[str, list[DeviceKey]] = {k: [] for k in wanted}
    if not wanted:
        return found
    rows = await session.scalars(
        select(KeyAdultDevice)
        .where(KeyAdultDevice.key_adult_id.in_(wanted), KeyAdultDevice.revoked_at.is_(None))
        .order_by(KeyAdultDevice.created_at, KeyAdultDevice.device_id)
    )
    for row in rows:
        # Keys were checked at enrolment; a bad row is skipped rather than block a notice.
        try:
            found[row.key_adult_id].append(DeviceKey(row.device_id, sealing_key(row)))
        except ValueError:
            continue
    return found
