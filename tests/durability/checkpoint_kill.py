"""A broker killed (-9) the moment its forked checkpoint writer opens its temporary file, and
what must come back after (``test_deep_restart``: a full checkpoint; ``test_delta_checkpoint_
kill``: a delta).

The temporary file is a named pipe: an open of its other end returns when the writer opens
it, and the broker's process group (the writer too) is killed then. What a real crash leaves,
a partial temporary file, then replaces the pipe before the restart."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from tests.broker_process import BrokerProcess
from tests.durability.clients import read_queue


class KillWhenTheWriterOpens:
    """Armed on construction; :meth:`leave_partial` after the publishing the kill cuts off."""

    def __init__(self, broker: BrokerProcess, pipe: Path) -> None:
        self.broker = broker
        self.pipe = pipe
        self.killed = threading.Event()
        self.partial: list[bytes] = []
        os.mkfifo(pipe)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        fd = os.open(self.pipe, os.O_RDONLY)   # returns when the writer opens it
        self.broker.kill()
        self.killed.set()
        with os.fdopen(fd, "rb") as reader:
            self.partial.append(reader.read())

    def leave_partial(self) -> None:
        """Wait for the kill, then put what the killed writer wrote where the pipe was."""
        assert self.killed.wait(60), self.broker.log()
        self.watcher.join(10)
        self.pipe.unlink()
        self.pipe.write_bytes(self.partial[0])
        assert "Traceback" not in self.broker.log()


def assert_restarts_whole(broker: BrokerProcess, queue: str, kept: list[bytes],
                          fill: list[bytes], confirmed: set[bytes]) -> None:
    """Restarted from the checkpoint with journal replayed after it, ``queue`` holds ``kept``
    and then the fill in order, each once and flagged redelivered (after kill -9 each may
    have been delivered): every confirmed message, and maybe some whose confirm the kill cut
    off."""
    broker.start()
    line = broker.wait_for_line("from the checkpoint at segment")
    match = re.search(r"and (\d+) records after it", line)
    assert match is not None and int(match.group(1)) > 0, line
    got = read_queue(broker.amqp_url, queue)
    assert all(redelivered for _, redelivered in got)
    bodies = [body for body, _ in got]
    assert bodies[:len(kept)] == kept
    came = bodies[len(kept):]
    assert came == fill[:len(came)]
    assert confirmed <= set(came)
    assert "Traceback" not in broker.log()
