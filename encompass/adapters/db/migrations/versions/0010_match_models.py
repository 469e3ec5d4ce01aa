"""The matching model kept with the roster version it was fitted for.

``m`` and ``u`` of every comparison level (numbers and level names only, no one's data),
written when a model is fitted on reported children (``encompass match CHILDREN.jsonl
--explain-model --save-model``) and again, ``u`` refitted, when a pupils import changes the
roster; matcher workers read it when they index the roster.

Revision ID: 0010
Revises: 0011 (0011 reached main first)
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "match_models",
        sa.Column("roster_version", sa.String(length=32), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("roster_version", name=op.f("pk_match_models")),
    )
    op.create_index(op.f("ix_match_models_fitted_at"), "match_models", ["fitted_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_match_models_fitted_at"), table_name="match_models")
    op.drop_table("match_models")
