"""Revocation: a force's or an admin's credential can be withdrawn at once.

``revoked_at`` is set by ``encompass forces revoke`` / ``admins revoke``; a token whose row
has it set is refused like an unknown one. The row stays, so incidents and the audit log
keep naming who they were.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("forces", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("admins", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admins") as batch:
        batch.drop_column("revoked_at")
    with op.batch_alter_table("forces") as batch:
        batch.drop_column("revoked_at")
