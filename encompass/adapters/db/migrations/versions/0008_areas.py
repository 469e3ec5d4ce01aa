"""Areas: settings belong to a local authority; alerts record who took them in hand.

``settings.la_code`` (an ONS code, optional in ``settings.csv``) is the area an admin of that
local authority sees; settings of kind ``local_authority`` are the authority's named
contacts. ``alerts`` gain who acknowledged and who resolved them, and when.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("settings", sa.Column("la_code", sa.String(16), nullable=True))
    op.create_index("ix_settings_la_code", "settings", ["la_code"])
    op.add_column("alerts", sa.Column("acknowledged_at", sa.DateTime(timezone=True)))
    op.add_column("alerts", sa.Column("acknowledged_by", sa.String(200)))
    op.add_column("alerts", sa.Column("resolved_by", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("resolved_by")
        batch.drop_column("acknowledged_by")
        batch.drop_column("acknowledged_at")
    op.drop_index("ix_settings_la_code", table_name="settings")
    with op.batch_alter_table("settings") as batch:
        batch.drop_column("la_code")
