"""DLQ re-drive: ``warren ctl move_messages SRC DEST [--count N]``."""

from __future__ import annotations

import pika

from .conftest import drain, message_count
from .test_policies import ctl


def _dead_letter_three(channel, unique):
    channel.queue_declare(f"{unique}.dlq")
    channel.queue_declare(f"{unique}.work", arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{unique}.dlq"})
    for i in range(3):
        channel.basic_publish("", f"{unique}.work", str(i).encode(),
                              pika.BasicProperties(delivery_mode=2, headers={"n": i}))
    for _ in range(3):
        method, _, _ = channel.basic_get(f"{unique}.work")
        channel.basic_reject(method.delivery_tag, requeue=False)
    assert message_count(channel, f"{unique}.dlq") == 3


def test_move_all_dead_lettered_messages_back(broker, channel, unique):
    _dead_letter_three(channel, unique)
    proc = ctl(broker, "move_messages", f"{unique}.dlq", f"{unique}.work")
    assert "moved 3" in proc.stdout
    got = drain(channel, f"{unique}.work")
    assert [b for _, _, b in got] == [b"0", b"1", b"2"]
    # the message keeps its properties and its dead-letter history
    assert got[0][1].headers["n"] == 0 and got[0][1].delivery_mode == 2
    assert got[0][1].headers["x-death"][0]["reason"] == "rejected"
    assert message_count(channel, f"{unique}.dlq") == 0


def test_move_with_count(broker, channel, unique):
    _dead_letter_three(channel, unique)
    proc = ctl(broker, "move_messages", f"{unique}.dlq", f"{unique}.work", "--count", "2")
    assert "moved 2" in proc.stdout
    assert [b for _, _, b in drain(channel, f"{unique}.work")] == [b"0", b"1"]
    assert [b for _, _, b in drain(channel, f"{unique}.dlq")] == [b"2"]


def test_move_to_missing_queue_fails(broker, channel, unique):
    channel.queue_declare(unique)
    proc = ctl(broker, "move_messages", unique, f"{unique}.missing", check=False)
    assert proc.returncode != 0
    assert message_count(channel, unique) == 0
