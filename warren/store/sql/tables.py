"""The SQL store's schema as SQLAlchemy Core tables (the migrations create exactly these).

- ``warren_definitions``: one row per definition, ``value`` is the JSON text of the dict.
- ``warren_messages``: a message record stored once, however many queues hold it.
- ``warren_queue_messages``: a queue's reference to a message. ``seq`` gives queue order
  (allocated by the store, increasing); ``delivered`` remembers a delivery for
  redelivered=true after a restart; ``delivery_count`` how often the message came back to the
  queue (migration 0003), for delivery limits across restarts. The primary key starts with
  ``msg_id`` so "does any queue still hold this message?" (garbage collection after an ack) is
  an index lookup.
- ``warren_meta``: small named values; ``max_msg_id`` is the high-water mark of message ids so
  ids are never reused even after every message was acked and deleted.
- ``warren_lock``: the lease row the database locker (``warren.ha.lease_locker``) takes.

Every name starts with ``warren_`` so the schema can share a database with other applications.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

metadata = MetaData()


class NameBytes(TypeDecorator[str]):
    """A ``str`` stored as its UTF-8 bytes (BYTEA / BLOB).

    Keys are opaque to a store and may hold any character a client put in a name (PostgreSQL
    text cannot hold NUL), so they are kept as bytes; they compare and index the same.
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else value.encode("utf-8", "surrogatepass")

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else bytes(value).decode("utf-8", "surrogatepass")


# SQLite makes an INTEGER PRIMARY KEY the rowid (no second b-tree); BIGINT elsewhere.
MsgId = BigInteger().with_variant(Integer(), "sqlite")

definitions = Table(
    "warren_definitions",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("key", NameBytes, primary_key=True),
    Column("value", Text, nullable=False),
)

messages = Table(
    "warren_messages",
    metadata,
    Column("id", MsgId, primary_key=True, autoincrement=False),
    Column("record", LargeBinary, nullable=False),
)

queue_messages = Table(
    "warren_queue_messages",
    metadata,
    Column("msg_id", BigInteger, primary_key=True, autoincrement=False),
    Column("queue_key", NameBytes, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("delivered", Boolean, nullable=False, default=False),
    Column("delivery_count", Integer, nullable=False, default=0, server_default="0"),
    Index("ix_warren_queue_messages_queue_seq", "queue_key", "seq"),
)

meta = Table(
    "warren_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

lock = Table(
    "warren_lock",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", Text, nullable=True),
    Column("expires_at", Float, nullable=True),  # seconds since the epoch, NULL = free
    # = owner while the owner's liveness session holds the advisory lock (migration 0002)
    Column("bound_owner", Text, nullable=True),
)

#: Alembic's bookkeeping table, named like ours so it cannot clash with another app's.
VERSION_TABLE = "warren_alembic_version"
