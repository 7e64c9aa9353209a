"""Run one piece of file-writing work in a forked copy of the process (a checkpoint's).

Why fork: a checkpoint must serialize the journal's index as it was at one instant, while the
reactor thread goes on changing it. Copying the index first costs the reactor time in
proportion to the depth (about 0.1 µs a message: over half a second at 5M messages on a busy
machine). ``fork`` gives the child the whole index frozen at that instant, copy-on-write, for
the price of copying the page tables (tens of milliseconds, whatever the index holds), and the
child marshals it with no GIL shared with the reactor. Redis's BGSAVE does the same.

The child waits for a go byte on a pipe before it runs the work (the parent sends it once
what the checkpoint covers is durable; closing the pipe without it tells the child to give
up), runs nothing but the work given (no logging, no Twisted), closes every descriptor it
inherited first (so a socket the parent closes is closed for the peer at once, not when the
child exits), collects no garbage (that would write to every object's pages), and leaves
with ``os._exit``: 0 when the work ran, 1 when it raised, 2 when told to give up. The
parent reaps it with :func:`wait` (on a thread: it blocks).
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable

#: Exit statuses of the child.
DONE, FAILED, GAVE_UP = 0, 1, 2


def start(work: Callable[[], object]) -> tuple[int, int]:
    """Fork a child that runs ``work`` once told to; returns (its pid, the go descriptor).
    Raises OSError when the process cannot fork (no memory for it, a limit)."""
    ready, go = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(ready)
        os.close(go)
        raise
    if pid == 0:   # the child
        code = FAILED
        try:
            gc.disable()   # short-lived: a collection would only touch (copy) shared pages
            # the parent's handlers (Twisted's) are not the child's: a signal sent to the
            # whole group ends it; the previous checkpoint stays
            signal.set_wakeup_fd(-1)
            for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(number, signal.SIG_DFL)
            os.closerange(3, ready)
            os.closerange(ready + 1, os.sysconf("SC_OPEN_MAX"))
            if os.read(ready, 1) == b"1":
                work()
                code = DONE
            else:
                code = GAVE_UP
        finally:
            os._exit(code)
    os.close(ready)
    return pid, go


def go(descriptor: int, proceed: bool) -> None:
    """Tell the child to run its work (``proceed``) or to give up."""
    try:
        if proceed:
            os.write(descriptor, b"1")
    finally:
        os.close(descriptor)


def wait(pid: int) -> int:
    """Blocking: reap the child; its exit status (see the module doc)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
