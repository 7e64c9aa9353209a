"""Free ports for brokers started on one machine side by side (tests, embedded brokers)."""

from __future__ import annotations

import random
import socket


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now and outside the kernel's ephemeral range.

    ``bind(0)`` hands out ephemeral ports, which outgoing client connections also use: between
    our check and the broker's bind one of them may take it. Ports below the ephemeral range
    are only ever taken by listeners, so a port found free here stays free unless another
    test picks the same random number (``BrokerProcess.start`` retries then).
    """
    low, _high = _ephemeral_range()
    top = max(low - 1, 20000)
    while True:
        port = random.randint(10000, top)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
