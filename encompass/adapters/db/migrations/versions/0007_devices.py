"""Key Adults' devices: browsers set up with a one-time link, signing in with their key.

``key_adult_devices`` holds the public halves of each browser's keys (X25519 to open
notices, Ed25519 to sign acknowledgements and to sign in); the private halves never leave
the browser. ``device_invites`` are the one-time set-up links (only their hash is kept),
``device_challenges`` the single-use sign-in challenges (a signed-in browser's session is a
``web_sessions`` row naming its device). ``envelopes.device_id`` says which device an
envelope is sealed to: ``directory`` for the key in ``key_adults.csv``, so a notice has one
envelope per device.

Revision ID: 0007
Revises: 0010 (ids were assigned per branch; this one follows the matching models)
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "key_adult_devices",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("key_adult_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("x25519_public", sa.String(length=64), nullable=False),
        sa.Column("ed25519_public", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_adult_id"],
            ["key_adults.key_adult_id"],
            name=op.f("fk_key_adult_devices_key_adult_id_key_adults"),
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_key_adult_devices")),
    )
    op.create_index(
        op.f("ix_key_adult_devices_key_adult_id"), "key_adult_devices", ["key_adult_id"]
    )
    op.create_table(
        "device_invites",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("key_adult_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_adult_id"],
            ["key_adults.key_adult_id"],
            name=op.f("fk_device_invites_key_adult_id_key_adults"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_device_invites")),
    )
    op.create_table(
        "device_challenges",
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("challenge", name=op.f("pk_device_challenges")),
    )
    with op.batch_alter_table("envelopes") as batch:
        batch.add_column(
            sa.Column("device_id", sa.String(length=36), nullable=False, server_default="directory")
        )
        batch.drop_constraint("uq_envelopes_notice_id", type_="unique")
        batch.create_unique_constraint(
            "uq_envelopes_notice_id", ["notice_id", "key_adult_id", "kind", "device_id"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM envelopes WHERE device_id <> 'directory'")
    with op.batch_alter_table("envelopes") as batch:
        batch.drop_constraint("uq_envelopes_notice_id", type_="unique")
        batch.create_unique_constraint(
            "uq_envelopes_notice_id", ["notice_id", "key_adult_id", "kind"]
        )
        batch.drop_column("device_id")
    op.drop_table("device_challenges")
    op.drop_table("device_invites")
    op.drop_index(op.f("ix_key_adult_devices_key_adult_id"), table_name="key_adult_devices")
    op.drop_table("key_adult_devices")
