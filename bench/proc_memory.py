"""A broker's memory as the kernel counts it, summed over its process group.

Why a group: a broker may run several processes (RabbitMQ's epmd and beam.smp, warren's forked
checkpoint writer), and each bench started its broker as a process-group leader. The figures
come from ``/proc``: ``status`` (VmRSS now, VmHWM the peak) or ``smaps_rollup`` (Pss, where a
page shared by a fork counts once, split between the processes that share it).
"""

from __future__ import annotations

import os


def group_bytes(pgid: int, field: str, source: str = "status") -> int:
    """Bytes of ``field`` (a kB line of ``/proc/PID/<source>``) summed over the processes of
    the group ``pgid``; a process that goes away meanwhile, or a kernel thread, counts 0."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
            with open(f"/proc/{entry}/{source}") as lines:
                for line in lines:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return total
