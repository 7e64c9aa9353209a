"""Run ``warren`` with its garbage collections timed: ``python -m bench.gc_probe OUT warren-args``.

A ``gc.callbacks`` hook notes each collection's generation and duration; at exit (a clean
``warren`` shutdown on SIGTERM) they are written to OUT, one ``generation seconds frozen
freed`` per line (frozen: objects frozen after a full collection; freed: what it collected),
for ``bench.scale`` to summarise beside the other client's round trips. Nothing is written
while the broker runs, so the probe itself adds no I/O to the pauses it measures.
"""

from __future__ import annotations

import atexit
import gc
import sys
import time


def install(out: str) -> None:
    pauses: list[tuple[int, float, int, int]] = []
    started: list[float] = [0.0]

    def hook(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            generation = info["generation"]
            # get_freeze_count() walks every frozen object: only after the rare full ones
            pauses.append((generation, time.perf_counter() - started[0],
                           gc.get_freeze_count() if generation == 2 else 0,
                           info.get("collected", 0)))

    def write() -> None:
        with open(out, "w") as f:
            f.writelines(f"{gen} {seconds:.6f} {frozen} {collected}\n"
                         for gen, seconds, frozen, collected in pauses)

    gc.callbacks.append(hook)
    atexit.register(write)


def summary(path: str) -> str:
    """One line: per generation, the number of collections, their median and max in ms."""
    import statistics
    by_gen: dict[int, list[float]] = {}
    frozen_after: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                gen, seconds, frozen, *collected = line.split()
                if gen == "2":
                    frozen_after.append("/".join([frozen, *collected]))
                by_gen.setdefault(int(gen), []).append(float(seconds) * 1e3)
    except OSError:
        return "gc: no record"
    parts = []
    for gen in sorted(by_gen):
        ms = sorted(by_gen[gen])
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        parts.append(f"gen{gen} n={len(ms)} median {statistics.median(ms):.1f} p99 {p99:.1f}"
                     f" max {ms[-1]:.1f} ms")
    if by_gen.get(2):
        parts.append("gen2 in order (ms/frozen objects/objects freed) " + " ".join(
            f"{ms:.0f}/{frozen}" for ms, frozen in zip(by_gen[2], frozen_after)))
    return "gc: " + "; ".join(parts)


def main() -> int:
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1)   # kill -USR1: every thread's stack, to the log
    out = sys.argv[1]
    install(out)
    from warren.cli import main as warren_main
    return warren_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
