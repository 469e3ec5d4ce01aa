"""The personal fields kept at rest, each sealed and opened in exactly one place here.

An incident's personal data — the report as received (``incident_versions.payload``), the
matcher's candidates (``children.candidates``: pupils' names, dates of birth, postcodes)
and the Key Adults' replies (``acknowledgements.reply``) — is encrypted under that
incident's data key (``incident_keys``), itself wrapped by the key-encryption key from the
data key file (``adapters/data_keys.py``). The keys travel in each session's ``info``
(``make_sessions``), so the callers pass their session and read plain values.

Each value is bound to its column and row: a ciphertext copied elsewhere does not open.
Once retention has destroyed an incident's key, opening raises :class:`DataPurged`;
anything else that does not open raises :class:`DataUnreadable` (both DataUnavailable).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.data_keys import (
    PREFIX,
    DataKeys,
    DataPurged,
    DataUnavailable,
    DataUnreadable,
    open_value,
    seal_value,
)
from encompass.adapters.db.engine import SESSION_KEYS, forget_old_versions
from encompass.adapters.db.tables import (
    Acknowledgement,
    Child,
    IncidentKey,
    IncidentVersion,
    Notice,
)
from encompass.adapters.key_files import KeyFileError

__all__ = [
    "DataPurged",
    "DataUnavailable",
    "DataUnreadable",
    "check_key_file",
    "data_keys_to_write",
    "forget_cached_key",
    "incident_data_key",
    "keys_of",
    "open_candidates",
    "open_payload",
    "open_reply",
    "preload_data_keys",
    "seal_candidates",
    "seal_clear_values",
    "seal_payload",
    "seal_reply",
    "sealed_payload",
]

_CACHE: Final = "incident_data_keys"
PAYLOAD: Final = "incident_versions.payload"
CANDIDATES: Final = "children.candidates"
REPLY: Final = "acknowledgements.reply"
_KEYS = cast("Table", IncidentKey.__table__)


def keys_of(session: AsyncSession) -> DataKeys:
    """The key-encryption key the session was made with (``make_sessions(engine, keys)``)."""
    keys = session.info.get(SESSION_KEYS)
    if not isinstance(keys, DataKeys):
        raise RuntimeError(
            "these sessions carry no data keys: build them with "
            "make_sessions(engine, data_keys) (bootstrap does)"
        )
    return keys


def _cache(session: AsyncSession) -> dict[str, bytes]:
    cache: dict[str, bytes] = session.info.setdefault(_CACHE, {})
    return cache


def forget_cached_key(session: AsyncSession, incident_id: str) -> None:
    """Drop the session's copy of an incident's data key (after destroying it)."""
    _cache(session).pop(incident_id, None)


async def preload_data_keys(
    session: AsyncSession, incident_ids: set[str], *, to_write: bool = False
) -> None:
    """Read the data keys of many incidents in one query (a batch about to be opened);
    purged, missing or foreign ones are left for :func:`incident_data_key` to report.
    ``to_write``: the caller will seal under them, so the rows are held shared until it
    commits, as :func:`incident_data_key` does for a writer."""
    cache, keys = _cache(session), keys_of(session)
    wanted = incident_ids - cache.keys()
    if not wanted:
        return
    query = select(IncidentKey).where(
        IncidentKey.incident_id.in_(wanted),
        IncidentKey.wrapped_key.is_not(None),
        IncidentKey.kek_id == keys.fingerprint,
    )
    if to_write:
        query = query.order_by(IncidentKey.incident_id).with_for_update(read=True)
    for row in await session.scalars(query):
        assert row.wrapped_key is not None
        try:
            cache[row.incident_id] = keys.unwrap(row.wrapped_key, incident_id=row.incident_id)
        except DataUnreadable:
            continue


async def incident_data_key(
    session: AsyncSession, incident_id: str, *, create_at: datetime | None = None
) -> bytes:
    """The data key of ``incident_id``, made (and stored wrapped, in the caller's
    transaction) when it has none and ``create_at`` is given. DataPurged when retention
    destroyed it; DataUnreadable when there is none or it was wrapped by another KEK."""
    cache = _cache(session)
    if incident_id in cache:
        return cache[incident_id]
    keys = keys_of(session)
    # A writer holds the key row shared until it commits, so retention (which locks it for
    # update and then re-checks) never destroys a key a new version is being sealed under.
    row = await session.get(
        IncidentKey, incident_id, with_for_update={"read": True} if create_at else None
    )
    if row is None:
        if create_at is None:
            raise DataUnreadable(f"incident {incident_id} has no data key")
        key = keys.new_data_key()
        session.add(
            IncidentKey(
                incident_id=incident_id,
                wrapped_key=keys.wrap(key, incident_id=incident_id),
                kek_id=keys.fingerprint,
                created_at=create_at,
                purged_at=None,
            )
        )
        await session.flush()
    else:
        key = _unwrapped(keys, row)
    cache[incident_id] = key
    return key


def _unwrapped(keys: DataKeys, row: IncidentKey) -> bytes:
    if row.wrapped_key is None:
        when = row.purged_at.isoformat() if row.purged_at else "an unknown time"
        raise DataPurged(
            f"incident {row.incident_id} was purged under the retention rule at {when}"
        )
    if row.kek_id != keys.fingerprint:
        raise DataUnreadable(
            f"incident {row.incident_id}'s data key was wrapped by another "
            f"data key file ({row.kek_id}, this one is "
            f"{keys.fingerprint})"
        )
    return keys.unwrap(row.wrapped_key, incident_id=row.incident_id)


async def data_keys_to_write(
    session: AsyncSession,
    incident_ids: Collection[str],
    *,
    create_at: datetime,
    new: Collection[str] = (),
) -> dict[str, bytes | DataUnavailable]:
    """:func:`incident_data_key` with ``create_at`` for many incidents at once: one read
    (the rows held shared until the caller commits) and one insert for the keys made.
    Each incident maps to its key, or to the DataPurged or DataUnreadable it would raise.
    ``new``: incidents the caller's transaction has just created, so none has a key yet."""
    cache, keys = _cache(session), keys_of(session)
    found: dict[str, bytes | DataUnavailable] = {
        incident_id: cache[incident_id] for incident_id in incident_ids if incident_id in cache
    }
    wanted = sorted(set(incident_ids) - found.keys())
    existing = [incident_id for incident_id in wanted if incident_id not in new]
    if existing:
        rows = await session.scalars(
            select(IncidentKey)
            .where(IncidentKey.incident_id.in_(existing))
            .order_by(IncidentKey.incident_id)
            .with_for_update(read=True)
        )
        for row in rows:
            try:
                found[row.incident_id] = cache[row.incident_id] = _unwrapped(keys, row)
            except DataUnavailable as exc:
                found[row.incident_id] = exc
    made = {i: keys.new_data_key() for i in wanted if i not in found}
    if made:
        await session.execute(
            insert(_KEYS),
            [
                {
                    "incident_id": incident_id,
                    "wrapped_key": keys.wrap(key, incident_id=incident_id),
                    "kek_id": keys.fingerprint,
                    "created_at": create_at,
                    "purged_at": None,
                }
                for incident_id, key in made.items()
            ],
        )
        cache.update(made)
        found.update(made)
    return found


# --- incident_versions.payload: the report as received (canonical JSON) ---


async def seal_payload(
    session: AsyncSession, *, incident_id: str, version_id: str, payload: str, now: datetime
) -> str:
    """The stored form of a version's report; makes the incident's data key if needed."""
    key = await incident_data_key(session, incident_id, create_at=now)
    return sealed_payload(key, version_id=version_id, payload=payload)


def sealed_payload(key: bytes, *, version_id: str, payload: str) -> str:
    """The stored form of a version's report under its incident's data ``key`` (from
    :func:`data_keys_to_write`)."""
    return seal_value(key, payload.encode(), purpose=PAYLOAD, subject=version_id)


async def open_payload(
    session: AsyncSession, *, incident_id: str, version_id: str, stored: str
) -> str:
    """The report of a version as received (canonical JSON); DataUnavailable otherwise."""
    key = await incident_data_key(session, incident_id)
    return open_value(key, stored, purpose=PAYLOAD, subject=version_id).decode()


# --- children.candidates: the matcher's candidates (pupils' identifying details) ---


async def seal_candidates(
    session: AsyncSession, *, incident_id: str, child_id: str, candidates: list[Any], now: datetime
) -> str:
    """The stored form of a child's candidates (a JSON list)."""
    key = await incident_data_key(session, incident_id, create_at=now)
    return seal_value(
        key,
        json.dumps(candidates, separators=(",", ":")).encode(),
        purpose=CANDIDATES,
        subject=child_id,
    )


async def open_candidates(
    session: AsyncSession, *, incident_id: str, child_id: str, stored: str
) -> list[Any]:
    """A child's candidates as the matcher left them; DataUnavailable otherwise."""
    key = await incident_data_key(session, incident_id)
    value = json.loads(open_value(key, stored, purpose=CANDIDATES, subject=child_id))
    if not isinstance(value, list):
        raise DataUnreadable(f"{CANDIDATES} of {child_id} is not a list")
    return value


# --- acknowledgements.reply: a Key Adult's free text about the child ---


async def seal_reply(
    session: AsyncSession, *, incident_id: str, ack_id: str, reply: str | None, now: datetime
) -> str | None:
    """The stored form of an acknowledgement's reply (None stays None)."""
    if reply is None:
        return None
    key = await incident_data_key(session, incident_id, create_at=now)
    return seal_value(key, reply.encode(), purpose=REPLY, subject=ack_id)


async def open_reply(
    session: AsyncSession, *, incident_id: str, ack_id: str, stored: str | None
) -> str | None:
    """An acknowledgement's reply; DataUnavailable when it cannot be read."""
    if stored is None:
        return None
    key = await incident_data_key(session, incident_id)
    return open_value(key, stored, purpose=REPLY, subject=ack_id).decode()


# --- values stored in clear before data at rest existed (revision 0004) ---


async def seal_clear_values(
    sessions: async_sessionmaker[AsyncSession], now: datetime, *, batch: int = 500
) -> int:
    """Seal every personal field still held in clear (written before this scheme), so an
    upgraded database reads like a new one. Idempotent; returns how many it sealed."""
    sealed = 0
    while True:
        async with sessions.begin() as session:
            done = await _seal_payloads(session, now, batch)
            done += await _seal_candidates(session, now, batch)
            done += await _seal_replies(session, now, batch)
        sealed += done
        if done == 0:
            if sealed:
                await forget_old_versions(
                    sessions, ["incident_versions", "children", "acknowledgements"]
                )
            return sealed


def _clear(column: Any) -> Any:
    return column.is_not(None) & ~column.startswith(PREFIX)


async def _seal_payloads(session: AsyncSession, now: datetime, batch: int) -> int:
    rows = (
        await session.scalars(
            select(IncidentVersion).where(_clear(IncidentVersion.payload)).limit(batch)
        )
    ).all()
    for version in rows:
        version.payload = await seal_payload(
            session,
            incident_id=version.incident_id,
            version_id=version.version_id,
            payload=version.payload,
            now=now,
        )
    return len(rows)


async def _seal_candidates(session: AsyncSession, now: datetime, batch: int) -> int:
    rows = (
        await session.execute(
            select(Child, IncidentVersion.incident_id)
            .join(IncidentVersion, IncidentVersion.version_id == Child.version_id)
            .where(_clear(Child.candidates))
            .limit(batch)
        )
    ).all()
    for child, incident_id in rows:
        try:
            value = json.loads(child.candidates)
        except ValueError:
            value = []
        child.candidates = await seal_candidates(
            session,
            incident_id=incident_id,
            child_id=child.child_id,
            candidates=value if isinstance(value, list) else [],
            now=now,
        )
    return len(rows)


async def _seal_replies(session: AsyncSession, now: datetime, batch: int) -> int:
    rows = (
        await session.execute(
            select(Acknowledgement, Notice.incident_id)
            .join(Notice, Notice.notice_id == Acknowledgement.notice_id)
            .where(_clear(Acknowledgement.reply))
            .limit(batch)
        )
    ).all()
    for ack, incident_id in rows:
        ack.reply = await seal_reply(
            session, incident_id=incident_id, ack_id=ack.ack_id, reply=ack.reply, now=now
        )
    return len(rows)


async def check_key_file(
    sessions: async_sessionmaker[AsyncSession], keys: DataKeys, where: str
) -> None:
    """KeyFileError (one line) when the database holds data keys wrapped by another
    key-encryption key than ``keys`` (the file at ``where``): a lost or swapped key file
    must stop the start, not let the service seal new data while the old cannot be read."""
    async with sessions() as session:
        other = await session.scalar(
            select(IncidentKey.kek_id)
            .where(IncidentKey.wrapped_key.is_not(None), IncidentKey.kek_id != keys.fingerprint)
            .limit(1)
        )
    if other is not None:
        raise KeyFileError(
            f"the data key {where} ({keys.fingerprint}) is not the one the "
            f"database's data was sealed with ({other}): restore that file "
            "(ENCOMPASS_DATA_KEY)"
        )
