"""A broker killed (-9) after a journal checkpoint starts from it: the records written after
the checkpoint (acks of messages it holds, new confirmed publishes) are replayed on top, and
nothing confirmed is lost, nothing acked comes back, the order holds. The checkpoint interval
is a few KB here (``--journal-checkpoint-bytes``), so the first part's messages make exactly
one checkpoint and the second part's records stay after it."""

from __future__ import annotations

import re

from tests.broker_process import BrokerProcess
from tests.durability.clients import read_queue
from tests.durability.test_saved_index import QUEUE, publish, take


def bodies(start: int, stop: int, size: int = 0) -> list[bytes]:
    return [f"m{i}".encode().ljust(size, b".") for i in range(start, stop)]


def test_a_kill_after_a_checkpoint_starts_from_it_and_replays_what_follows(tmp_path):
    broker = BrokerProcess(tmp_path / "data",
                           extra_args=["--journal-checkpoint-bytes", "5000"]).start()
    try:
        first = bodies(0, 20, size=300)   # about 7 KB of records: one checkpoint
        publish(broker.amqp_url, first)
        assert take(broker.amqp_url, 5) == first[:5]
        broker.wait_for_line("checkpoint at segment 1")
        assert take(broker.amqp_url, 3) == first[5:8]   # acks after it, of messages it holds
        # confirmed after the acks: the journal's sync for it covers them too
        publish(broker.amqp_url, bodies(20, 23))
        broker.kill()
        broker.start()
        line = broker.wait_for_line("from the checkpoint at segment 1")
        assert "recovered 15 messages in 1 queues" in line, line
        replayed = int(re.search(r"and (\d+) records after it", line).group(1))
        assert replayed > 0, line
        got = read_queue(broker.amqp_url, QUEUE)
        assert [body for body, _ in got] == first[8:] + bodies(20, 23)
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()
