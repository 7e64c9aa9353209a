"""The lease row records whether its owner holds the liveness lock (``session_bound``).

A master on PostgreSQL also holds a session advisory lock; while the row says so, a broker
that gets that lock knows the master's database session is gone and may take the lease at
once instead of waiting for it to expire (see :mod:`warren.ha.lease_locker`). Existing rows
start as ``false``: the old rule, expiry only.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("warren_lock", sa.Column("session_bound", sa.Boolean, nullable=False,
                                           server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("warren_lock") as batch:
        batch.drop_column("session_bound")
