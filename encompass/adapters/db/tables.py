"""The database schema: one SQLAlchemy table per thing we keep.

Times are stored as aware UTC instants. Tokens are stored as SHA-256 hashes, never in
clear; an incident's personal fields are sealed under its data key and the webhook HMAC key
under the data key file (``services/records/at_rest.py``, ``adapters/data_keys.py``). Alembic
migrations in ``migrations/`` are the authority for the live schema; a test checks these
definitions and the migrations agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware instant, stored in UTC; SQLite keeps no offset, so we restore it on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give an aware instant")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 (SQLAlchemy's)


class Force(Base):
    __tablename__ = "forces"
    force_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Set by ``encompass forces revoke``: the token stops working; the row stays.
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Admin(Base):
    __tablename__ = "admins"
    admin_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    area: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Set by ``encompass admins revoke``: the token stops working; the row stays.
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Where overdue and failed-delivery e-mails go (``admins add --email``); optional.
    email: Mapped[str | None] = mapped_column(String(254))


class SettingRow(Base):
    __tablename__ = "settings"
    setting_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    nation: Mapped[str] = mapped_column(String(20))
    postcode: Mapped[str] = mapped_column(String(10))
    day_starts: Mapped[time] = mapped_column(Time)
    day_ends: Mapped[time] = mapped_column(Time)
    dispatch_at: Mapped[time] = mapped_column(Time)
    calendar_id: Mapped[str] = mapped_column(String(64))
    holiday_policy: Mapped[str] = mapped_column(String(16))
    # The local authority (ONS code) the setting belongs to: the area its admins see.
    la_code: Mapped[str | None] = mapped_column(String(16), index=True)


class CalendarSpanRow(Base):
    __tablename__ = "calendar_spans"
    span_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    calendar_id: Mapped[str] = mapped_column(String(64), index=True)
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(8))


class KeyAdultDevice(Base):
    """A browser a Key Adult set up: the public halves of its keys (raw, base64)."""

    __tablename__ = "key_adult_devices"
    device_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_adult_id: Mapped[str] = mapped_column(ForeignKey("key_adults.key_adult_id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    x25519_public: Mapped[str] = mapped_column(String(64))
    ed25519_public: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DeviceInvite(Base):
    """A one-time set-up link; only the SHA-256 of its token is kept."""

    __tablename__ = "device_invites"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_adult_id: Mapped[str] = mapped_column(ForeignKey("key_adults.key_adult_id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    device_id: Mapped[str | None] = mapped_column(String(36))


class DeviceChallenge(Base):
    """A single-use sign-in challenge; deleted when used."""

    __tablename__ = "device_challenges"
    challenge: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class KeyAdultRow(Base):
    __tablename__ = "key_adults"
    key_adult_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    setting_id: Mapped[str] = mapped_column(ForeignKey("settings.setting_id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254))
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    public_key_pem: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The webhook HMAC key (SHA-256 of the secret), sealed under the data key file: a
    # reader of the database alone cannot sign a webhook (``adapters/data_keys.py``).
    webhook_key_sealed: Mapped[str | None] = mapped_column(Text)


class PupilRow(Base):
    __tablename__ = "pupils"
    pupil_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    setting_id: Mapped[str] = mapped_column(ForeignKey("settings.setting_id"), index=True)
    upn: Mapped[str | None] = mapped_column(String(13), index=True)
    given_name: Mapped[str] = mapped_column(String(200))
    family_name: Mapped[str] = mapped_column(String(200))
    date_of_birth: Mapped[date] = mapped_column(Date, index=True)
    postcode: Mapped[str] = mapped_column(String(10), index=True)
    gender: Mapped[str | None] = mapped_column(String(20))


ROSTER_VERSION_ID = 1
"""The key of the one row of ``roster_version``."""
CALENDARS_VERSION_ID = 2
"""The key of the ``roster_version`` row that changes with every calendars or settings
import: workers cache calendars until it changes."""


class RosterVersionRow(Base):
    """One row whose ``version`` changes in every transaction that changes any roster.

    Workers holding the roster in memory compare it to the version they indexed to know,
    with one cheap read, when to rebuild. A random token rather than a counter: a database
    recreated from scratch never repeats a version a running worker has already seen.
    """

    __tablename__ = "roster_version"
    roster_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[str] = mapped_column(String(32))


class MatchModelRow(Base):
    """The matching model (m and u of every comparison level, as JSON) fitted for one roster
    version; the newest row's m carries over to the next version, its u refitted."""

    __tablename__ = "match_models"
    roster_version: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    fitted_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Incident(Base):
    """One incident of one force; its versions are kept in ``incident_versions``."""

    __tablename__ = "incidents"
    __table_args__ = (UniqueConstraint("force_id", "incident_ref"),)
    incident_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    force_id: Mapped[str] = mapped_column(ForeignKey("forces.force_id"), index=True)
    incident_ref: Mapped[str] = mapped_column(String(64))
    latest_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # active | withdrawn
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class IncidentVersion(Base):
    """Every version as received: the audit trail of what the force told us."""

    __tablename__ = "incident_versions"
    __table_args__ = (UniqueConstraint("incident_id", "version"),)
    version_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)  # sealed under the incident's data key
    payload_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # How often the safety net published the id again because no matcher had processed it
    # (``services/intake/requeue_stale.py``); the last value past the limit means an
    # admin was alerted.
    requeues: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class IncidentKey(Base):
    """An incident's data key, wrapped by the key-encryption key (never in clear here).

    Retention destroys it: ``wrapped_key`` becomes NULL and ``purged_at`` is set, and every
    field sealed under it is unreadable from then on (``services/records/retention.py``).
    """

    __tablename__ = "incident_keys"
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), primary_key=True)
    wrapped_key: Mapped[str | None] = mapped_column(Text)
    kek_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Child(Base):
    """A child named in one incident version, with the matcher's decision."""

    __tablename__ = "children"
    __table_args__ = (UniqueConstraint("version_id", "position"),)
    child_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("incident_versions.version_id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(8), index=True)  # match | review | none
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    candidates: Mapped[str] = mapped_column(Text)  # JSON, sealed (``services/records/at_rest.py``)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(200))


class Notice(Base):
    """One child at one setting: the unit of the status lifecycle (domain/status.py)."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("child_id", "setting_id"),
        Index("ix_notices_due", "status", "deliver_at"),
    )
    notice_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    child_id: Mapped[str] = mapped_column(ForeignKey("children.child_id"), index=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.incident_id"), index=True)
    setting_id: Mapped[str] = mapped_column(ForeignKey("settings.setting_id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    deliver_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    recipient: Mapped[str] = mapped_column(String(16))  # key_adults | holiday_contact
    release_reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The overdue flag (domain/status.py) and its two escalations; set by the escalation sweep.
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    admins_alerted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # Every UPDATE of a notice carries "WHERE status = <the status we read>": a writer that
    # read a status another has since changed (a delivery racing an acknowledgement) fails
    # with StaleDataError and retries, instead of silently moving the lifecycle backwards.
    __mapper_args__ = {"version_id_col": status, "version_id_generator": False}  # noqa: RUF012


class NoticeEvent(Base):
    """Every status transition with its time and cause; never deleted but by retention."""

    __tablename__ = "notice_events"
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    cause: Mapped[str] = mapped_column(Text)


class SealedEnvelope(Base):
    """One sealed envelope: a notice (or its retraction) for one recipient's key."""

    __tablename__ = "envelopes"
    # One envelope per device of each recipient: ``directory`` is the key in key_adults.csv.
    __table_args__ = (UniqueConstraint("notice_id", "key_adult_id", "kind", "device_id"),)
    envelope_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), index=True)
    key_adult_id: Mapped[str] = mapped_column(ForeignKey("key_adults.key_adult_id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # key_adult | deputy | holiday_contact
    kind: Mapped[str] = mapped_column(String(16))  # notice | retraction
    body: Mapped[str] = mapped_column(Text)  # the envelope JSON, as sent
    envelope_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    delivered_by: Mapped[str | None] = mapped_column(String(16))  # webhook | portal
    device_id: Mapped[str] = mapped_column(String(36), server_default="directory")


class OutboxEntry(Base):
    """A delivery to hand to the broker, written in the transaction that made it due.

    The relay publishes pending entries and marks them; a crash between the two only
    publishes again, and the delivery worker's idempotency key makes that harmless.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "outbox_id"),)
    outbox_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.envelope_id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.envelope_id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | failed
    detail: Mapped[str] = mapped_column(String(500))  # status code or error class, no data


class Acknowledgement(Base):
    """A Key Adult's signed receipt: who, when, what, and the signature that proves it."""

    __tablename__ = "acknowledgements"
    ack_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), index=True)
    key_adult_id: Mapped[str] = mapped_column(ForeignKey("key_adults.key_adult_id"))
    kind: Mapped[str] = mapped_column(String(16))  # received | not_our_pupil | child_absent
    reply: Mapped[str | None] = mapped_column(Text)  # sealed under the incident's data key
    envelope_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class Alert(Base):
    """Something a person must look at: a failed delivery, an overdue acknowledgement."""

    __tablename__ = "alerts"
    alert_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[str | None] = mapped_column(ForeignKey("notices.notice_id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str] = mapped_column(String(16))  # deputies | admins | force
    message: Mapped[str] = mapped_column(Text)  # no personal data
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Who took it in hand and who closed it: ``admin:ID``, or ``system`` / ``key_adult:ID``
    # when the notice was answered and the alert no longer needs anyone.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_by: Mapped[str | None] = mapped_column(String(200))


class AuditEntry(Base):
    """Append-only, hash-chained record of every read and change (services/records/audit.py)."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # force:CODE | admin:ID | key_adult:ID | system
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class MailOutboxRow(Base):
    """An overdue or failed-delivery e-mail, written in the transaction that decided it.

    One row per notice, event and address (unique), so a person is e-mailed once however
    many dispatchers decide it and however often they restart; the mail relay sends pending
    rows (``services/receiving/alert_mail.py``). Ids, an address and statuses only: no personal data
    of a child.
    """

    __tablename__ = "mail_outbox"
    __table_args__ = (
        UniqueConstraint("notice_id", "kind", "address"),
        Index("ix_mail_outbox_pending", "status", "next_at"),
    )
    mail_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.notice_id"), index=True)
    # overdue_deputies | overdue_admins | delivery_failed
    kind: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str] = mapped_column(String(16))  # recipient | admin
    recipient_id: Mapped[str] = mapped_column(String(64))  # key_adult_id or admin_id
    address: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | skipped
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    detail: Mapped[str] = mapped_column(String(500))  # SMTP code or error class, no data


class WebSessionRow(Base):
    """A signed-in browser: an admin (``/admin``) or a Key Adult's device (``/inbox``).

    Only the SHA-256 of the cookie's value is kept, like every other token; closing a
    session (sign-out, expiry, a revoked device or admin) sets ``closed_at``.
    """

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
