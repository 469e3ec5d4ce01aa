"""Data at rest: per-incident data keys, sealed personal fields, a sealed webhook key.

``incident_keys`` holds each incident's data key wrapped by the key-encryption key (a file,
never the database). ``children.candidates`` and ``acknowledgements.reply`` become text, to
hold sealed values; ``key_adults.webhook_secret_hash`` (the very key that signed webhooks,
so anyone reading the database could forge them) is dropped for ``webhook_key_sealed``.
Key Adults issued a webhook secret before this revision need new credentials for the HMAC
header; every webhook carries the service's Ed25519 signature regardless.

Values stored in clear before this revision are not encrypted here (a migration has no
access to the key file): the first start after upgrading seals them
(``services/at_rest.seal_clear_values``, run by ``bootstrap``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incident_keys",
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("wrapped_key", sa.Text(), nullable=True),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.incident_id"],
            name=op.f("fk_incident_keys_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_incident_keys")),
    )
    # Batch mode: SQLite cannot alter or drop a column in place, so the table is copied.
    with op.batch_alter_table("children") as batch:
        batch.alter_column(
            "candidates",
            existing_type=sa.JSON(),
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using="candidates::text",
        )
    with op.batch_alter_table("acknowledgements") as batch:
        batch.alter_column(
            "reply", existing_type=sa.String(length=500), type_=sa.Text(), existing_nullable=True
        )
    with op.batch_alter_table("key_adults") as batch:
        batch.add_column(sa.Column("webhook_key_sealed", sa.Text(), nullable=True))
        batch.drop_column("webhook_secret_hash")


def downgrade() -> None:
    with op.batch_alter_table("key_adults") as batch:
        batch.add_column(sa.Column("webhook_secret_hash", sa.String(length=64), nullable=True))
        batch.drop_column("webhook_key_sealed")
    with op.batch_alter_table("acknowledgements") as batch:
        batch.alter_column(
            "reply", existing_type=sa.Text(), type_=sa.String(length=500), existing_nullable=True
        )
    with op.batch_alter_table("children") as batch:
        batch.alter_column(
            "candidates",
            existing_type=sa.Text(),
            type_=sa.JSON(),
            existing_nullable=False,
            postgresql_using="candidates::json",
        )
    op.drop_table("incident_keys")
