"""Run ``warren`` with its garbage collections and reactor turns timed:
``python -m bench.gc_probe OUT warren-args``.

A ``gc.callbacks`` hook notes each collection's generation and duration; at exit (a clean
``warren`` shutdown on SIGTERM) they are written to OUT, one ``generation seconds frozen
freed`` per line (frozen: objects frozen after a full collection; freed: what it collected),
for ``bench.scale`` to summarise beside the other client's round trips. Nothing is written
while the broker runs, so the probe itself adds no I/O to the pauses it measures.

The reactor's turns are timed too (``TurnTimer``, written to OUT + ``.turns``): a turn is
what runs between one ``epoll_wait`` returning and the next being called (the poll's events,
``poll_slices``' teardowns, the timed calls), in wall time and in the reactor thread's CPU
time (``time.thread_time``: the machine's load does not count), with the collections that ran
inside it. A watchdog thread samples the reactor thread's stack every ~2 ms while a turn is
longer than ``SAMPLE_AFTER``, so the longest turns are kept with what they were doing (the
GIL's switch interval is 2 ms in the probe, not 5, for that).
"""

from __future__ import annotations

import atexit
import gc
import heapq
import sys
import threading
import time
from collections import Counter
from typing import Any

#: a turn longer than this (wall) gets its stack sampled
SAMPLE_AFTER = 0.004
#: the longest turns (by CPU time) kept with their samples
KEEP_TURNS = 12
#: frames of a sampled stack kept (the innermost)
STACK_DEPTH = 14
#: a turn's CPU past which it is counted as past the 4 ms budget (``turn_slices``) and more
#: than one step of work beyond it
PAST_BUDGET = 0.005
#: seconds of collections in the current turn, wall and the thread's CPU (the gc hook adds)
_gc_in_turn = [0.0, 0.0]


def install(out: str) -> None:
    pauses: list[tuple[int, float, int, int]] = []
    started: list[float] = [0.0, 0.0]

    def hook(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            started[1] = time.thread_time()
        else:
            generation = info["generation"]
            _gc_in_turn[0] += time.perf_counter() - started[0]
            _gc_in_turn[1] += time.thread_time() - started[1]
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


class _TimedPoller:
    """The reactor's epoll object, with each ``poll`` ending one turn and starting the next."""

    def __init__(self, poller: Any, timer: "TurnTimer") -> None:
        self._poller = poller
        self._timer = timer

    def poll(self, *args: Any) -> Any:
        self._timer.end_turn()
        try:
            return self._poller.poll(*args)
        finally:
            self._timer.begin_turn()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)


class TurnTimer:
    """Every reactor turn timed; the longest kept with the stacks sampled while they ran."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.seq = 0
        self.began: float | None = None     # perf_counter when the current turn began
        self.cpu_began = 0.0
        self.samples: list[tuple[int, tuple[str, ...]]] = []
        self.cpu: list[float] = []          # every turn's CPU seconds (a float per turn)
        self.wall: list[float] = []         # and its wall seconds
        self.longest: list[tuple[float, int, float, tuple[float, ...], float, list[str]]] = []
        self.started = time.perf_counter()
        self.main = threading.get_ident()

    def attach(self, reactor: Any) -> None:
        reactor._poller = _TimedPoller(reactor._poller, self)
        sys.setswitchinterval(0.002)
        threading.Thread(target=self._watch, name="turn-watchdog", daemon=True).start()
        atexit.register(self.write)

    def begin_turn(self) -> None:
        self.seq += 1
        _gc_in_turn[0] = _gc_in_turn[1] = 0.0
        self.cpu_began = time.thread_time()
        self.began = time.perf_counter()

    def end_turn(self) -> None:
        began = self.began
        if began is None:
            return
        self.began = None
        wall = time.perf_counter() - began
        cpu = time.thread_time() - self.cpu_began
        self.cpu.append(cpu)
        self.wall.append(wall)
        if len(self.longest) < KEEP_TURNS or cpu > self.longest[0][0]:
            stacks = Counter(stack for seq, stack in self.samples if seq == self.seq)
            shown = [f"{n}x " + " < ".join(reversed(stack)) for stack, n in stacks.most_common(3)]
            record = (cpu, self.seq, wall, tuple(_gc_in_turn), began - self.started, shown)
            if len(self.longest) < KEEP_TURNS:
                heapq.heappush(self.longest, record)
            else:
                heapq.heapreplace(self.longest, record)
        if self.samples:
            self.samples = []

    def _watch(self) -> None:
        frames = sys._current_frames
        while True:
            time.sleep(0.001)
            began, seq = self.began, self.seq
            if began is None or time.perf_counter() - began < SAMPLE_AFTER:
                continue
            frame = frames().get(self.main)
            stack = []
            while frame is not None and len(stack) < STACK_DEPTH:
                code = frame.f_code
                stack.append(f"{'/'.join(code.co_filename.rsplit('/', 2)[-2:])}:{frame.f_lineno}"
                             f" {code.co_name}")
                frame = frame.f_back
            self.samples.append((seq, tuple(stack)))

    def write(self) -> None:
        cpu, wall = sorted(self.cpu), sorted(self.wall)
        with open(self.out, "w") as f:
            if cpu:
                p99 = cpu[min(len(cpu) - 1, int(len(cpu) * 0.99))]
                wall_p99 = wall[min(len(wall) - 1, int(len(wall) * 0.99))]
                over = sum(1 for c in cpu if c > 0.010)
                past = sum(1 for c in cpu if c > PAST_BUDGET)
                f.write(f"turns n={len(cpu)} cpu p99 {p99 * 1e3:.2f} ms max {cpu[-1] * 1e3:.1f}"
                        f" ms, {past} above {PAST_BUDGET * 1e3:g} ms, {over} above 10 ms; wall"
                        f" p99 {wall_p99 * 1e3:.1f} ms max {wall[-1] * 1e3:.1f} ms\n")
            for cpu_s, _seq, wall, in_gc, at, shown in sorted(self.longest, reverse=True):
                f.write(f"  turn at {at:.1f} s: cpu {cpu_s * 1e3:.1f} ms wall {wall * 1e3:.1f} ms"
                        f", of which collections cpu {in_gc[1] * 1e3:.1f} ms wall"
                        f" {in_gc[0] * 1e3:.1f} ms\n")
                for line in shown:
                    f.write(f"    {line}\n")


def turns_summary(path: str, details: int = 3) -> str:
    """The turn timer's first line and its ``details`` longest turns (with their stacks)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return "turns: no record"
    shown, turns = [], 0
    for line in lines:
        if line.startswith("  turn"):
            turns += 1
            if turns > details:
                break
        shown.append(line)
    return "\n    ".join(shown)


def freed_by_generation(path: str) -> dict[int, int]:
    """The objects the collections of each generation freed, in all (a thaw's full
    collection counted with generation 2)."""
    freed: dict[int, int] = {}
    try:
        with open(path) as f:
            for line in f:
                gen, _seconds, _frozen, *collected = line.split()
                freed[int(gen)] = freed.get(int(gen), 0) + int(collected[0] if collected else 0)
    except OSError:
        pass
    return freed


def summary(path: str) -> str:
    """One line: per generation, the number of collections, their median and max in ms."""
    import statistics
    by_gen: dict[int, list[float]] = {}
    freed: dict[int, int] = {}
    frozen_after: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                gen, seconds, frozen, *collected = line.split()
                if gen == "2":
                    frozen_after.append("/".join([frozen, *collected]))
                by_gen.setdefault(int(gen), []).append(float(seconds) * 1e3)
                freed[int(gen)] = freed.get(int(gen), 0) + sum(map(int, collected))
    except OSError:
        return "gc: no record"
    parts = []
    for gen in sorted(by_gen):
        ms = sorted(by_gen[gen])
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        parts.append(f"gen{gen} n={len(ms)} median {statistics.median(ms):.1f} p99 {p99:.1f}"
                     f" max {ms[-1]:.1f} ms, {freed.get(gen, 0)} objects freed")
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
    import warren.poll_slices as poll_slices
    installed = poll_slices.install

    def install_timed() -> bool:     # cli.py imports install when it runs: this one
        done = installed()
        from twisted.internet import reactor
        if done:
            TurnTimer(out + ".turns").attach(reactor)
        return done
    poll_slices.install = install_timed
    from warren.cli import main as warren_main
    return warren_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
