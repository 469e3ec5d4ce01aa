"""A safety net for incident versions the matcher never processed.

``incident_versions.requeues`` counts how often the dispatcher published a version's id
again because it was still unprocessed long after it was queued (a message lost between
queues, or a publish that failed after the version was stored).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incident_versions") as batch:
        batch.add_column(sa.Column("requeues", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("incident_versions") as batch:
        batch.drop_column("requeues")
