"""Free ports for brokers started on one machine side by side (tests, embedded brokers)."""

from __future__ import annotations

import os
import random
import socket

#: Where picks start: below it are the well-known and usual service ports.
LOWEST = 10000
#: Ports this process handed out, not handed out again while its share has others to give.
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _share(low: int, top: int) -> tuple[int, int]:
    """This process's part of [low, top]: the whole, or under pytest-xdist the worker's own
    slice (``PYTEST_XDIST_WORKER`` gwN of ``PYTEST_XDIST_WORKER_COUNT``). A broker a test
    kills and starts again keeps its ports, and while it is down another worker's test could
    pick one of them; workers picking from separate slices never do."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        index, count = int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    except (KeyError, ValueError):
        return low, top
    if not 0 <= index < count:
        return low, top
    width = (top - low + 1) // count
    return low + index * width, low + (index + 1) * width - 1


def free_port() -> int:
    """A port free now, outside the kernel's ephemeral range, and not handed out before by
    this process.

    ``bind(0)`` hands out ephemeral ports, which outgoing client connections also use: between
    our check and the broker's bind one of them may take it. Ports below the ephemeral range
    are only ever taken by listeners, so a port found free here stays free unless another
    picker takes the same number: a test worker picks from its own slice (``_share``), and
    never hands out a port twice (a broker stopped for a restart keeps its ports) until its
    slice is half used, then starts over (``BrokerProcess.start`` retries a first start that
    still lost a port).
    """
    low, _high = _ephemeral_range()
    first, last = _share(LOWEST, max(low - 1, 2 * LOWEST))
    if len(_given) * 2 > last - first:
        _given.clear()
    while True:
        port = random.randint(first, last)
        if port in _given:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
