"""A broker killed (-9) while a delta checkpoint is being written (``JournalStore``: after a
full checkpoint, the next ones write what changed since the one before) starts from the full
checkpoint and the deltas before the killed one, and replays the journal written since:
every message back once, in order, none acked back, and no traceback.

The delta's temporary file is a named pipe here (``tests/durability/test_deep_restart``'s
trick): an open of the pipe's other end returns when the forked writer opens it, and the test
kills the broker's process group then; what a real crash leaves, a partial temporary file,
replaces the pipe before the restart.
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
        pipe = journal / (saved_index.delta_name(int(seq.group(1)) + 1) + ".tmp")
        os.mkfifo(pipe)
        killed = threading.Event()
        partial: list[bytes] = []

        def kill_when_the_writer_opens() -> None:
            fd = os.open(pipe, os.O_RDONLY)   # returns when the delta's writer opens
            broker.kill()                     # the process group: the writer too
            killed.set()
            with os.fdopen(fd, "rb") as reader:
                partial.append(reader.read())

        watcher = threading.Thread(target=kill_when_the_writer_opens, daemon=True)
        watcher.start()
        assert take(broker.amqp_url, 100) == first[:100]   # acks of messages it holds
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
        assert re.search(r"the checkpoint and \d+ deltas on it", broker.log())
        got = read_queue(broker.amqp_url, QUEUE)
        assert not any(redelivered for _, redelivered in got)
        got_bodies = [body for body, _ in got]
        assert got_bodies[:2900] == first[100:]
        fill = got_bodies[2900:]
        assert fill == second[:len(fill)]
        assert confirmed <= set(fill)
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()
