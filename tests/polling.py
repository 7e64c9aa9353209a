"""The one bounded poll of the test suite: wait for a condition the tests cannot be told of.

Where an event exists (a log line, a client callback) tests wait for it. Where the only way
to see a state is to ask (an API field, a queue depth), they ask until it holds, every
``every`` seconds, and fail with what was last seen once ``timeout`` has passed: never an
unbounded loop, never a fixed sleep standing in for the wait.
"""

from __future__ import annotations

import time
from typing import Any, Callable


def eventually(check: Callable[[], Any], what: str = "", *, timeout: float = 30.0,
               every: float = 0.05) -> Any:
    """Call ``check`` until it returns something true and return that; fail after
    ``timeout`` seconds, naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for "
                                 f"{what or check}; last: {last!r}")
        time.sleep(every)
