"""Initial schema: definitions, messages, queue references, meta values, the lease lock.

Written out column by column (not ``metadata.create_all``) so this revision stays what it was
when later revisions change ``tables.py``.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warren_definitions",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("key", sa.LargeBinary, primary_key=True),  # UTF-8 of a str that may hold NUL
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "warren_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("record", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "warren_queue_messages",
        sa.Column("msg_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("queue_key", sa.LargeBinary, primary_key=True),  # UTF-8, may hold NUL
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_warren_queue_messages_queue_seq", "warren_queue_messages", ["queue_key", "seq"]
    )
    op.create_table(
        "warren_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "warren_lock",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("warren_lock")
    op.drop_table("warren_meta")
    op.drop_index("ix_warren_queue_messages_queue_seq", "warren_queue_messages")
    op.drop_table("warren_queue_messages")
    op.drop_table("warren_messages")
    op.drop_table("warren_definitions")
