"""The roster version: one row, changed by every pupils import, so that workers holding
the roster in memory know cheaply when to rebuild their index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No row yet: readers take a missing row as the version "" (no import since upgrading),
    # and the next pupils import inserts it.
    op.create_table(
        "roster_version",
        sa.Column("roster_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("roster_id", name=op.f("pk_roster_version")),
    )


def downgrade() -> None:
    op.drop_table("roster_version")
