"""Sealed delivery and acknowledgements: envelopes, the outbox, delivery attempts,
acknowledgements, alerts, the audit log, and the overdue flags on notices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_audit_log_entry_hash")),
    )
    op.create_table(
        "acknowledgements",
        sa.Column("ack_id", sa.String(length=36), nullable=False),
        sa.Column("notice_id", sa.String(length=36), nullable=False),
        sa.Column("key_adult_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reply", sa.String(length=500), nullable=True),
        sa.Column("envelope_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_adult_id"],
            ["key_adults.key_adult_id"],
            name=op.f("fk_acknowledgements_key_adult_id_key_adults"),
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.notice_id"], name=op.f("fk_acknowledgements_notice_id_notices")
        ),
        sa.PrimaryKeyConstraint("ack_id", name=op.f("pk_acknowledgements")),
    )
    op.create_index(
        op.f("ix_acknowledgements_notice_id"), "acknowledgements", ["notice_id"], unique=False
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.notice_id"], name=op.f("fk_alerts_notice_id_notices")
        ),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_notice_id"), "alerts", ["notice_id"], unique=False)
    op.create_table(
        "envelopes",
        sa.Column("envelope_id", sa.String(length=36), nullable=False),
        sa.Column("notice_id", sa.String(length=36), nullable=False),
        sa.Column("key_adult_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("envelope_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_adult_id"],
            ["key_adults.key_adult_id"],
            name=op.f("fk_envelopes_key_adult_id_key_adults"),
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.notice_id"], name=op.f("fk_envelopes_notice_id_notices")
        ),
        sa.PrimaryKeyConstraint("envelope_id", name=op.f("pk_envelopes")),
        sa.UniqueConstraint(
            "notice_id", "key_adult_id", "kind", name=op.f("uq_envelopes_notice_id")
        ),
    )
    op.create_index(op.f("ix_envelopes_key_adult_id"), "envelopes", ["key_adult_id"], unique=False)
    op.create_index(op.f("ix_envelopes_notice_id"), "envelopes", ["notice_id"], unique=False)
    op.create_table(
        "delivery_attempts",
        sa.Column("attempt_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("envelope_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["envelope_id"],
            ["envelopes.envelope_id"],
            name=op.f("fk_delivery_attempts_envelope_id_envelopes"),
        ),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(
        op.f("ix_delivery_attempts_envelope_id"), "delivery_attempts", ["envelope_id"], unique=False
    )
    op.create_table(
        "outbox",
        sa.Column("outbox_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("envelope_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["envelope_id"], ["envelopes.envelope_id"], name=op.f("fk_outbox_envelope_id_envelopes")
        ),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_envelope_id"), "outbox", ["envelope_id"], unique=False)
    op.create_index("ix_outbox_pending", "outbox", ["published_at", "outbox_id"], unique=False)
    op.add_column("notices", sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "notices", sa.Column("admins_alerted_at", sa.DateTime(timezone=True), nullable=True)
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("admins_alerted_at")
        batch.drop_column("overdue_at")
    for table in (
        "outbox",
        "delivery_attempts",
        "envelopes",
        "alerts",
        "acknowledgements",
        "audit_log",
    ):
        op.drop_table(table)
