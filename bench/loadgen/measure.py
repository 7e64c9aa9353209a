"""What a run measures, apart from any protocol: stamped bodies, the receiving tally, CPU.

Every body starts with 24 bytes: the run's tag, the message's sequence number and its send
time (``CLOCK_MONOTONIC`` in ns, one clock for every process of the host, so publisher and
consumer processes can subtract each other's readings). The rest is filler up to the size.
The receiver keeps one bit per sequence number, so loss and duplicates are exact, and one
latency per message, so percentiles are exact too (no sampling, no histogram buckets).
"""

from __future__ import annotations

import array
import math
import os
import struct
import time
from dataclasses import dataclass, field

STAMP = struct.Struct(">QQQ")  # run tag, sequence number, send time (ns)
STAMP_SIZE = STAMP.size
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))


class BodyMaker:
    """Bodies of `size` bytes (at least the stamp) carrying `tag`, a sequence number and now."""

    def __init__(self, tag: int, size: int) -> None:
        if size < STAMP_SIZE:
            raise ValueError(f"--size must be at least {STAMP_SIZE} (the stamp)")
        self.tag = tag
        self.filler = b"x" * (size - STAMP_SIZE)

    def make(self, seq: int) -> bytes:
        return STAMP.pack(self.tag, seq, time.monotonic_ns()) + self.filler


@dataclass(slots=True)
class Tally:
    """One consumer stream's count: unique messages of this run, duplicates, latencies."""

    tag: int
    received: int = 0
    dups: int = 0
    foreign: int = 0  # messages of another run (leftovers in a fixed-name queue or topic)
    reads: int = 0  # socket reads that carried at least one message
    last_receive_ns: int = 0
    received_in_window: int = 0
    drain_timed_out: bool = False
    seen: bytearray = field(default_factory=bytearray)  # one bit per sequence number
    latencies_ns: array.array = field(default_factory=lambda: array.array("q"))

    def record(self, data, offset: int, now_ns: int) -> None:
        """Count the body that starts at `offset` in `data`; `now_ns` is the read's time."""
        tag, seq, sent_ns = STAMP.unpack_from(data, offset)
        if tag != self.tag:
            self.foreign += 1
            return
        byte, bit = seq >> 3, 1 << (seq & 7)
        if byte >= len(self.seen):
            self.seen.extend(bytes(max(byte + 1 - len(self.seen), 1 << 16)))
        if self.seen[byte] & bit:
            self.dups += 1
            return
        self.seen[byte] |= bit
        self.received += 1
        self.last_receive_ns = now_ns
        self.latencies_ns.append(now_ns - sent_ns)

    def summary(self) -> dict:
        """What the parent process needs (picklable, without the bitmap)."""
        return {"received": self.received, "dups": self.dups, "foreign": self.foreign,
                "reads": self.reads, "last_receive_ns": self.last_receive_ns,
                "received_in_window": self.received_in_window,
                "drain_timed_out": self.drain_timed_out,
                "latencies_ns": self.latencies_ns}


def latency_ms(latencies_ns: array.array) -> dict:
    """Exact percentiles (nearest rank) of the latencies, in milliseconds."""
    if not latencies_ns:
        return {name: None for name, _ in PERCENTILES} | {"max": None, "mean": None}
    ordered = sorted(latencies_ns)
    # nearest rank: the smallest value with at least q of all values at or below it
    figures = {name: ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1e6
               for name, q in PERCENTILES}
    figures["max"] = ordered[-1] / 1e6
    figures["mean"] = sum(ordered) / len(ordered) / 1e6
    return figures


# -- CPU ---------------------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def group_cpu_s(pgid: int) -> float:
    """CPU seconds of every live process in process group `pgid` (a broker and its children:
    RabbitMQ is a shell script, epmd-less beam and port programs)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp (field 5)
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores; idle and iowait excluded)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICKS


def listening_pgid(port: int) -> int | None:
    """The process group of whoever listens on TCP `port` (the broker under test), if visible."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            continue
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                return os.getpgid(int(pid))
        except OSError:
            continue
    return None


@dataclass(slots=True)
class CpuSample:
    """CPU counters read at one instant; two of them give the window's percentages."""

    at: float
    broker: float | None
    clients: list[float]
    machine: float

    @classmethod
    def take(cls, broker_pgid: int | None, client_pids: list[int]) -> CpuSample:
        return cls(time.monotonic(), None if broker_pgid is None else group_cpu_s(broker_pgid),
                   [process_cpu_s(pid) for pid in client_pids], machine_busy_s())
