"""A process's CPU time as the kernel counts it (``/proc/PID/stat``: user + system ticks).

Why CPU time: on a shared machine the load of other processes changes the rates a bench
measures, but not what the broker itself spent per message. A process that has gone away
counts 0, so a sum over a group or a tree taken while a forked child exits stays whole.
"""

from __future__ import annotations

import os


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (every thread) so far."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """The same, summed over the processes of the group ``pgid`` (a broker and any child it
    forked; RabbitMQ's beam.smp and its helpers)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is not None and int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
