"""The lease row records which owner bound it to its liveness session (``bound_owner``).

A master on PostgreSQL also holds a session advisory lock; while ``bound_owner = owner``, a
broker that gets that lock knows the master's database session is gone and may take the lease
at once instead of waiting for it to expire (see :mod:`warren.ha.lease_locker`).

An owner id rather than a flag: a broker of the previous version takes an expired lease with
an UPDATE that knows nothing of this column, and leaves it as it was. As an id, a stale value
names the *previous* owner and so never matches the new one, which stays expiry-only; a stale
``true`` flag would have let a liveness probe take a live old-version master's lease.

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
    op.add_column("warren_lock", sa.Column("bound_owner", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("warren_lock") as batch:
        batch.drop_column("bound_owner")
