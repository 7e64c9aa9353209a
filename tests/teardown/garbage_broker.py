"""``python -m tests.teardown.garbage_broker run FLAGS...``: ``warren run`` in this process,
with its standard input a command line: ``collect`` makes the broker's reactor thread wait
until no client connection is left (no TCP connection of a client in the reactor's poll set,
none waiting for its teardown in ``poll_slices``), then run a full collection of everything
(``gc_tuning``'s frozen objects thawed first, so a cycle that died while frozen is found too)
and print one line ``GARBAGE n {type: count}`` of the unreachable objects it found, or
``GARBAGE timeout`` when connections were still there after 30 s; the end of input stops the
broker.

Why a launcher and not the embedded broker: the cyclic garbage a closed connection leaves is
the broker process's own, seen only from inside it; the clients stay in the test's process,
so their garbage is not counted with it.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter

from warren.cli import main


def _collect_when_idle(deadline: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.tcp import Server
    selectables = [*reactor.getReaders(), *reactor.getWriters()]   # type: ignore[attr-defined]
    if any(isinstance(s, Server) for s in selectables) or getattr(reactor, "teardowns", ()):
        if time.monotonic() > deadline:
            print("GARBAGE timeout", flush=True)
        else:
            reactor.callLater(0.01, _collect_when_idle, deadline)  # type: ignore[attr-defined]
        return
    _collect()


def _collect() -> None:
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        found = gc.collect()
        kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    # DEBUG_SAVEALL kept them (and gc_tuning froze them with the survivors): freed now, so
    # the next report is of new garbage only
    gc.unfreeze()
    gc.collect()
    print(f"GARBAGE {found} {json.dumps(dict(kinds.most_common()))}", flush=True)


def _commands() -> None:
    # os.read, not sys.stdin (see warren/embedded/tied.py: a daemon thread in a buffered
    # read would hold its lock at exit)
    pending = b""
    while chunk := os.read(sys.stdin.fileno(), 4096):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip() == b"collect":
                from twisted.internet import reactor
                reactor.callFromThread(                      # type: ignore[attr-defined]
                    _collect_when_idle, time.monotonic() + 30)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    threading.Thread(target=_commands, daemon=True, name="garbage commands").start()
    sys.exit(main(sys.argv[1:]))
