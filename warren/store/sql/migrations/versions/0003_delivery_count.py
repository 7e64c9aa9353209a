"""Queue references remember how often their message came back to the queue.

``delivery_count`` is the count behind ``x-delivery-limit`` and the ``x-delivery-count`` /
``JMSXDeliveryCount`` headers (nack/reject with requeue, a consumer gone with it unacked), so
that a poison message cannot start afresh after a restart. Existing rows get 0: they were never
counted, as a broker of the previous version did not count.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("warren_queue_messages",
                  sa.Column("delivery_count", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("warren_queue_messages") as batch:
        batch.drop_column("delivery_count")
