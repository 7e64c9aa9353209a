"""A broker killed (-9) while its journal checkpoint is being written, after a fill that
outran it, starts from the checkpoint before and replays the journal written since (acks of
messages the checkpoint holds, then the fill): every message back once, in order, none acked
back, and no traceback.

The checkpoint's temporary file is a named pipe here, so the test knows the instant the
checkpoint's writer (a forked child) opens it: an open of the pipe's other end returns
then, and the test kills the broker's process group at once. What a real crash leaves, a
partial temporary file, replaces the pipe before the restart.
"""

from __future__ import annotations

import os
import re
import threading

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher, read_queue
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
        pipe = journal / (saved_index.CHECKPOINT + ".tmp")
        os.mkfifo(pipe)
        killed = threading.Event()
        partial: list[bytes] = []

        def kill_when_the_writer_opens() -> None:
            fd = os.open(pipe, os.O_RDONLY)   # returns when the checkpoint's writer opens
            broker.kill()                     # the process group: the writer too
            killed.set()
            with os.fdopen(fd, "rb") as reader:
                partial.append(reader.read())

        watcher = threading.Thread(target=kill_when_the_writer_opens, daemon=True)
        watcher.start()
        second = bodies(3000, 8000)
        publisher = ConfirmedPublisher(broker.amqp_url, QUEUE, iter(second))
        publisher.run(timeout=60)   # until every body is confirmed or the broker is killed
        assert killed.wait(60), broker.log()
        watcher.join(10)
        confirmed = set(publisher.acked)
        pipe.unlink()
        pipe.write_bytes(partial[0])   # what the killed writer left
        assert "Traceback" not in broker.log()

        broker.start()
        line = broker.wait_for_line("from the checkpoint at segment")
        assert int(re.search(r"and (\d+) records after it", line).group(1)) > 0, line
        got = read_queue(broker.amqp_url, QUEUE)
        assert not any(redelivered for _, redelivered in got)
        got_bodies = [body for body, _ in got]
        # the first part less what was acked, then the fill in order, each once: every
        # confirmed message, and maybe some whose confirm the kill cut off
        assert got_bodies[:2900] == first[100:]
        fill = got_bodies[2900:]
        assert fill == second[:len(fill)]
        assert confirmed <= set(fill)
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()
