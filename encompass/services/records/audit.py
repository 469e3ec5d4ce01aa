"""The audit log: append-only and hash-chained, one entry per read or change (docs/security.md).

Each entry's hash is SHA-256 over the previous entry's hash followed by the canonical JSON
of the entry itself (``at``, ``actor``, ``action``, ``subject``, ``detail``), so changing,
inserting or removing any entry breaks every hash after it: :func:`verify_chain` finds the
first broken one. Removing entries from the *end* cannot be seen from inside the table;
publish :attr:`ChainReport.head` elsewhere (a ticket, a log line) to anchor it.

Details never hold personal data: :func:`record` refuses any key that names personal data
(the same list the log redaction uses), so a careless caller fails loudly in a test rather
than writing a child's name into a record kept for years.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import AuditEntry
from encompass.domain.envelope import canonical_bytes
from encompass.logging import PERSONAL_KEYS

GENESIS: Final = "0" * 64
# Any constant works: it only has to be the same for every writer of the audit log.
_CHAIN_LOCK: Final = 0x656E636F6D706173  # "encompas"
_BATCH: Final = 1_000


class PersonalDataInAudit(ValueError):
    """An audit detail named a field that may hold personal data."""


def _check_detail(value: Any, where: str = "detail") -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if str(key).lower() in PERSONAL_KEYS:
                raise PersonalDataInAudit(
                    f"{where}.{key} may hold personal data; audit details carry ids and counts only"
                )
            _check_detail(inner, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _check_detail(inner, f"{where}[{index}]")


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any],
) -> str:
    """The hash of one entry: hex SHA-256 of ``prev_hash`` (ASCII) + the canonical JSON of
    ``{"action","actor","at","detail","subject"}`` with ``at`` in UTC to the microsecond."""
    body = canonical_bytes(
        {
            "at": _instant(at),
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": dict(detail),
        }
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


async def _lock_chain(session: AsyncSession) -> None:
    # Two transactions appending at once would both read the same last hash and fork the
    # chain. On PostgreSQL a transaction-scoped advisory lock serialises appenders until
    # commit; SQLite already lets only one writer in at a time.
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})


def _clean(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    # A JSON round trip first: what is hashed is exactly what the database will give back.
    clean: dict[str, Any] = json.loads(json.dumps(dict(detail or {}), allow_nan=False))
    _check_detail(clean)
    return clean


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("audit times must be aware")
    # Microseconds only: the stored instant must hash the same after the round trip.
    return at.astimezone(UTC)


async def _last_hash(session: AsyncSession) -> str:
    last = await session.scalar(
        select(AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    )
    return last or GENESIS


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
    at: datetime,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it is kept only if that commits).

    ``actor`` is ``force:CODE``, ``admin:ID``, ``key_adult:ID``, ``admin:cli`` or
    ``system``; ``subject`` names what was read or changed (``notice:ID``…); ``detail``
    holds JSON values (ids, counts, statuses), never personal data — a key that may name
    personal data raises :class:`PersonalDataInAudit`. On PostgreSQL this holds the audit
    lock until the transaction ends, so call it last, just before committing.
    """
    checked = _checked(Event(actor, action, subject, detail or {}, at))
    await _lock_chain(session)
    (row,) = _rows(await _last_hash(session), [checked])
    entry = AuditEntry(**row)
    session.add(entry)
    await session.flush()  # the next record() in this transaction must see this one
    return entry


@dataclass(frozen=True)
class Event:
    """One entry for :func:`record_many`: the arguments :func:`record` takes."""

    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]
    at: datetime


def _checked(event: Event) -> Event:
    at = _utc(event.at)
    return Event(event.actor, event.action, event.subject, _clean(event.detail), at)


def _rows(prev_hash: str, checked: Sequence[Event]) -> list[dict[str, Any]]:
    rows = []
    for event in checked:
        digest = entry_hash(
            prev_hash,
            at=event.at,
            actor=event.actor,
            action=event.action,
            subject=event.subject,
            detail=event.detail,
        )
        rows.append(
            {
                "at": event.at,
                "actor": event.actor,
                "action": event.action,
                "subject": event.subject,
                "detail": event.detail,
                "prev_hash": prev_hash,
                "entry_hash": digest,
            }
        )
        prev_hash = digest
    return rows


def chained(prev_hash: str, events: Sequence[Event]) -> list[dict[str, Any]]:
    """The rows of ``events`` appended in order after the entry hashed ``prev_hash``: each
    links to the one before it, exactly as :func:`record` would have written them one by
    one. PersonalDataInAudit as :func:`record`."""
    return _rows(prev_hash, [_checked(event) for event in events])


_AUDIT_LOG = cast("Table", AuditEntry.__table__)


async def record_many(session: AsyncSession, events: Sequence[Event]) -> None:
    """Append ``events``, in order, in the caller's transaction: one lock, one read of the
    last hash and one statement for the lot, where :func:`record` takes all three per
    entry. The same rules as :func:`record`; call it last, just before committing."""
    if not events:
        return
    checked = [_checked(event) for event in events]  # refused before the lock is taken
    await _lock_chain(session)
    rows = _rows(await _last_hash(session), checked)
    # asyncpg runs the rows one by one, in order, in one round trip: each takes the next
    # ``seq``, so the chain reads back in the order it was hashed.
    await session.execute(insert(_AUDIT_LOG), rows)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`verify_chain`: ``ok``, how many entries were checked, the
    hash of the last one (``head``, to anchor outside the table) and, when broken, the
    ``seq`` of the first bad entry and why."""

    ok: bool
    entries: int
    head: str
    broken_at: int | None = None
    problem: str | None = None


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Recompute every entry's hash in ``seq`` order and check each links to the one
    before. Detects any changed, inserted or removed entry except removals at the end."""
    prev, count, after = GENESIS, 0, 0
    while True:
        # Plain rows, not ORM objects: a long log must not fill the session's identity map.
        rows = (
            await session.execute(
                select(
                    AuditEntry.seq,
                    AuditEntry.at,
                    AuditEntry.actor,
                    AuditEntry.action,
                    AuditEntry.subject,
                    AuditEntry.detail,
                    AuditEntry.prev_hash,
                    AuditEntry.entry_hash,
                )
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(_BATCH)
            )
        ).all()
        if not rows:
            return ChainReport(ok=True, entries=count, head=prev)
        for row in rows:
            if row.prev_hash != prev:
                return ChainReport(
                    False,
                    count,
                    prev,
                    row.seq,
                    "does not link to the entry before it (an entry was "
                    "removed, inserted or its link altered)",
                )
            expected = entry_hash(
                prev,
                at=row.at,
                actor=row.actor,
                action=row.action,
                subject=row.subject,
                detail=row.detail,
            )
            if row.entry_hash != expected:
                return ChainReport(
                    False, count, prev, row.seq, "its content does not match its hash (altered)"
                )
            prev, count, after = row.entry_hash, count + 1, row.seq
