"""Web sessions: a signed-in browser (an admin, or a Key Adult's device).

The cookie's value is never stored: only its SHA-256, like every token. A session closes on
sign-out, at its expiry, or when its admin or device is revoked.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(
        op.f("ix_web_sessions_subject_id"), "web_sessions", ["subject_id"], unique=False
    )
    op.create_index(op.f("ix_web_sessions_device_id"), "web_sessions", ["device_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_sessions_device_id"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_subject_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
