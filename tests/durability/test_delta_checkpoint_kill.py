"""A broker killed (-9) while a delta checkpoint is being written (``JournalStore``: after a
full checkpoint, the next ones write what changed since the one before) starts from the full
checkpoint and the deltas before the killed one, and replays the journal written since:
every message back once, in order, none acked back, and no traceback.

The delta's temporary file is a named pipe here, so the test knows the instant the forked
writer opens it (``checkpoint_kill.py``).
"""

from __future__ import annotations

import re

from tests.broker_process import BrokerProcess
from tests.durability.checkpoint_kill import KillWhenTheWriterOpens, assert_restarts_whole
from tests.durability.clients import ConfirmedPublisher
from tests.durability.test_saved_index import QUEUE, publish, take
from warren.store.journal import saved_index


def bodies(start: int, stop: int) -> list[bytes]:
    return [f"delta-{i:06d}".encode() for i in range(start, stop)]


def test_a_kill_during_a_delta_write_starts_from_the_chain_before_it(tmp_path):
    broker = BrokerProcess(tmp_path / "data",
                           extra_args=["--journal-checkpoint-bytes", "5000"]).start()
    journal = tmp_path / "data" / "journal"
    try:
        publish(broker.amqp_url, [])   # the queue
        first = bodies(0, 1500)
        assert ConfirmedPublisher(broker.amqp_url, QUEUE, iter(first)).run().acked == first
        broker.wait_for_line("(1500 messages,")   # a full checkpoint, or a delta on one
        more = bodies(1500, 3000)
        assert ConfirmedPublisher(broker.amqp_url, QUEUE, iter(more)).run().acked == more
        first += more
        line = broker.wait_for_line("(3000 messages,")
        seq = re.search(r", delta (\d+)\)", line)
        assert seq is not None, line   # a delta on the checkpoint of 1500 (or before)
        kill = KillWhenTheWriterOpens(
            broker, journal / (saved_index.delta_name(int(seq.group(1)) + 1) + ".tmp"))
        assert take(broker.amqp_url, 100) == first[:100]   # acks of messages it holds
        second = bodies(3000, 8000)
        publisher = ConfirmedPublisher(broker.amqp_url, QUEUE, iter(second))
        publisher.run(timeout=60)   # until every body is confirmed or the broker is killed
        kill.leave_partial()
        assert_restarts_whole(broker, QUEUE, first[100:], second, set(publisher.acked))
        assert re.search(r"the checkpoint and \d+ deltas on it", broker.log())
    finally:
        broker.kill()
