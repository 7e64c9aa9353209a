"""``python -m warren.embedded.tied [--remove-dir DIR] run FLAGS...``: ``warren run`` that
stops when the program that started it is gone.

An embedded broker must not outlive its program, and a program killed with SIGKILL (or one
that crashes) never calls ``stop()``. So the program holds the write end of this process's
standard input and never writes to it: the kernel closes it when the program ends, however it
ends, and the end of input here is a SIGTERM to this process, which stops the broker as
``warren run`` stops on SIGTERM. The program is no longer there to remove the broker's
temporary directory then, so ``--remove-dir`` names it for this process to remove once the
broker stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading

from ..cli import main


def _stop_when_input_ends() -> None:
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds the buffer's
    # lock, and the interpreter aborts at exit ("could not acquire lock ... at interpreter
    # shutdown") instead of ending with the broker's exit status
    while os.read(sys.stdin.fileno(), 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def run(argv: list[str]) -> int:
    remove = None
    if argv[:1] == ["--remove-dir"]:
        remove, argv = argv[1], argv[2:]
    threading.Thread(target=_stop_when_input_ends, daemon=True,
                     name="stop when the program is gone").start()
    try:
        return main(argv)
    finally:
        if remove is not None:
            shutil.rmtree(remove, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
