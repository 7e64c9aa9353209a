"""A broker killed (-9) while its journal checkpoint is being written, after a fill that
outran it, starts from the checkpoint before and replays the journal written since (acks of
messages the checkpoint holds, then the fill): every message back once, in order, none acked
back, and no traceback.

The checkpoint's temporary file is a named pipe here, so the test knows the instant the
checkpoint's writer (a forked child) opens it (``checkpoint_kill.py``).
"""

from __future__ import annotations

from tests.broker_process import BrokerProcess
from tests.durability.checkpoint_kill import KillWhenTheWriterOpens, assert_restarts_whole
from tests.durability.clients import ConfirmedPublisher
from tests.durability.test_saved_index import QUEUE, publish, take
from warren.store.journal import saved_index


def bodies(start: int, stop: int) -> list[bytes]:
    return [f"fill-{i:06d}".encode() for i in range(start, stop)]


def test_a_kill_during_a_checkpoint_write_after_a_fill_that_outran_it_loses_nothing(tmp_path):
    broker = BrokerProcess(tmp_path / "data",
                           extra_args=["--journal-checkpoint-bytes", "5000",
                                       # full checkpoints (deltas: test_delta_checkpoint_kill)
                                       "--journal-checkpoint-deltas", "0"]).start()
    journal = tmp_path / "data" / "journal"
    try:
        first = bodies(0, 3000)
        publish(broker.amqp_url, [])   # the queue
        assert ConfirmedPublisher(broker.amqp_url, QUEUE, iter(first)).run().acked == first
        # the checkpoint of all of it (its writer's file is over a pipe's 64 KiB buffer)
        broker.wait_for_line("(3000 messages,")
        assert take(broker.amqp_url, 100) == first[:100]   # acks after it
        kill = KillWhenTheWriterOpens(broker, journal / (saved_index.CHECKPOINT + ".tmp"))
        second = bodies(3000, 8000)
        publisher = ConfirmedPublisher(broker.amqp_url, QUEUE, iter(second))
        publisher.run(timeout=60)   # until every body is confirmed or the broker is killed
        kill.leave_partial()
        # the first part less what was acked, then the fill
        assert_restarts_whole(broker, QUEUE, first[100:], second, set(publisher.acked))
    finally:
        broker.kill()
