"""Helpers for the queue-feature tests (a pika channel per test is ``tests/conftest.py``'s):
bounded polling, queue depths, draining.

Polling is only used for conditions that have no client event (a queue's message count
dropping after an expiry); each poll lets pika process I/O for a few milliseconds and gives up
at a deadline, so a failure is an assertion, never a hang.
"""

from __future__ import annotations

import time
from typing import Callable



def wait_until(connection, condition: Callable[[], object], timeout: float = 5.0,
               what: str = "condition") -> object:
    """Process pika events in 20 ms slices until ``condition()`` is truthy or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        connection.process_data_events(time_limit=0.02)


def message_count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def drain(channel, queue: str) -> list[tuple]:
    """Every ready message of ``queue`` by basic.get (auto-ack): [(method, props, body)]."""
    out = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((method, props, body))
