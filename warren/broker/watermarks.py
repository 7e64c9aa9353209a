"""The memory watermark and the free-disk limit in bytes, from absolute or RAM-relative
settings, as RabbitMQ's ``vm_memory_high_watermark`` and ``disk_free_limit``.

RabbitMQ's defaults are relative to the machine: publishers are blocked past 0.4 of its RAM
(``vm_memory_high_watermark.relative``), and when the data directory's file system has less
than 50 MB free (``disk_free_limit.absolute = 50MB``; ``disk_free_limit.relative`` multiplies
the RAM instead). warren follows that, with one difference of what is measured: its memory
figure is the message data it holds (``Broker.memory_used``), not the whole process.
"""

from __future__ import annotations

import os

#: RabbitMQ's defaults
MEMORY_RELATIVE = 0.4
DISK_FREE_LIMIT = 50_000_000


def total_memory() -> int:
    """Bytes of physical memory of this machine (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def memory_watermark(absolute: int, relative: float) -> int:
    """``absolute`` bytes when given (> 0), else ``relative`` of the machine's RAM."""
    if absolute > 0:
        return absolute
    ram = total_memory()
    return int(ram * relative) if ram else 2 * 1024 ** 3


def disk_free_limit(absolute: int, relative: float) -> int:
    """``relative`` times the RAM when given (> 0), else ``absolute`` bytes."""
    if relative > 0:
        return int(total_memory() * relative)
    return absolute
