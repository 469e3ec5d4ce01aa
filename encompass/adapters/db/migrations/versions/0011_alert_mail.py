"""E-mail that reaches people: the mail outbox, and an optional e-mail address for admins.

``mail_outbox`` holds one row per notice, event (overdue, failed delivery) and address,
written in the transaction that decided it; the relay sends the pending ones.
``admins.email`` is where an admin's e-mails go (``encompass admins add --email``).

Revision ID: 0011
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("admins", sa.Column("email", sa.String(length=254), nullable=True))
    op.create_table(
        "mail_outbox",
        sa.Column("mail_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.notice_id"], name=op.f("fk_mail_outbox_notice_id_notices")
        ),
        sa.PrimaryKeyConstraint("mail_id", name=op.f("pk_mail_outbox")),
        sa.UniqueConstraint("notice_id", "kind", "address", name=op.f("uq_mail_outbox_notice_id")),
    )
    op.create_index(op.f("ix_mail_outbox_notice_id"), "mail_outbox", ["notice_id"], unique=False)
    op.create_index("ix_mail_outbox_pending", "mail_outbox", ["status", "next_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_pending", table_name="mail_outbox")
    op.drop_index(op.f("ix_mail_outbox_notice_id"), table_name="mail_outbox")
    op.drop_table("mail_outbox")
    with op.batch_alter_table("admins") as batch:
        batch.drop_column("email")
