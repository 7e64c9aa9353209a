"""Keep CPython's full garbage collections short, as long-running Python servers do.

Why: CPython's full (generation 2) collection scans every tracked object. A broker holds many
long-lived ones (recovered messages, queues, bindings, tens of thousands of MQTT subscriptions,
each a few tracked objects) and nearly none of them is ever cyclic garbage, yet each full
collection re-scans them all on the broker's only thread: at 50,000 subscriptions that was
33-760 ms during which no other client was served. CPython starts a full collection whenever
the objects promoted since the last one exceed a quarter of those that survived it, so the
pauses come again and again while the heap grows.

What: the survivors of each generation 1 or 2 collection are moved out of the collected
generations with ``gc.freeze()`` (they were all reachable a moment ago), so no collection scans
more than what has become long-lived since the last one: a pause follows the growth, not the
size of the heap, and the work of re-scanning the same objects goes too (making 300,000
long-lived objects: 0.9 s instead of 2.9 s, and no full collection at all).
Recovery runs with the collector off (it makes an object or three per live message and none is
garbage; the collector would only re-scan the growing heap) and is frozen when it ends.

The bound on memory: a frozen object that later becomes part of an unreachable cycle (a closed
connection's protocol and transport, say) is not freed while frozen. So once the interpreter's
allocated blocks (``sys.getallocatedblocks()``: it walks the allocator's arenas, not the
objects, so it is cheap; ``gc.get_freeze_count()`` walks every frozen object and is not) have
grown to ``THAW_GROWTH`` times what they were after the last thaw, and by ``THAW_MIN_BLOCKS``
at least, everything is unfrozen and CPython's next full collection scans the whole heap once
and frees such cycles; then the base is taken again. Memory held by leaked cycles is thus never
more than what was live at the last thaw (or ~200 MB while the broker is smaller), and the one
long pause comes at geometric steps of the heap's size (as CPython's own rule, with a factor of
2, not 1.25).

That pause is one scan of every tracked object and of every reference they hold (2.4 s with
1M topic and 1M direct bindings on this 2-core machine: 5M tracked objects; still 1.2 s with
the bindings' own objects taken out of the scan, for the dicts that hold 2M of them are walked
entry by entry), and no freezing or threshold can make it shorter: CPython 3.11 has no partial
unfreeze and no incremental collection, and a fork that would scan in a child costs 115-140 ms
of page tables at that size. So the thaw is not made incremental (CPython 3.11-3.13 offer no
way: ``gc.unfreeze`` moves everything, ``gc.collect(2)`` scans everything, and finding the
dead cycles among frozen objects from Python would cost more than the scan); the decision is
to need it rarely. What made it needed at all: a closed connection left cyclic garbage
(measured with ``bench.gc_probe``, 300 connections each opened and closed: some 70 objects per
AMQP 0-9-1 or MQTT connection, 34 per STOMP one), which the young collections free when the
connection was short-lived and only a thaw frees when it had lived long enough to be frozen.
The AMQP 0-9-1 and STOMP front ends now break those cycles on teardown (their method tables
are the class's, their timers and session links are let go, a deleted queue lets go of its
redelivery timer's callback; ``tests/teardown``): ``bench.scale churn``, 2,000 AMQP and 2,000
STOMP connections opened one after another with an exclusive queue and a consumer each, half
closed and half dropped, had the broker's collections free 248,000 objects (62 per
connection) before and 2,223 after, the same 2,223 with 200 of each (the start's): nothing
per connection. So churning connections of those kinds gives the young collections no cycles
to count, the evidence a thaw waits for (below) does not grow with them, and no thaw comes
for them; a thaw is left for the MQTT front end's (not changed here), for exceptions kept
with their tracebacks, and for what the rules below were written for. What can be avoided
is paying it for nothing: while the heap
grows with live data (queues, bindings, subscriptions being made) a thaw frees nothing
(measured: four thaws while 1M bindings were made freed 0 objects, one of 2.9 s at 100,000
queues freed 9). So a thaw waits for evidence as well as growth: the young collections since
the last thaw must have freed cycles of at least ``CYCLES_FOR_THAW`` objects per block the
heap grew by. What dies in cycles while frozen is of the kinds the workload makes, and those
kinds die young too, where the young collections count them (making 1M bindings: some 2,000
objects per 100,000 bindings, a hundredth of what would ask for a thaw); a workload that
leaves cycles behind (connections of a kind whose teardown leaves a cycle, exceptions kept
with their tracebacks) gets its thaws as before. And after a thaw whose collection freed
fewer objects than ``BARREN_THAW`` of the allocated blocks, the growth asked for before the
next one is multiplied by ``THAW_GROWTH`` again, up to ``THAW_GROWTH_MAX``; a thaw that frees
more puts it back to ``THAW_GROWTH``. The bound on leaked memory is thus a measured one, not
a certain one: cycles that die only while frozen, of a kind that never dies young, are kept
until the next thaw that other cycles call for.

Young collections: CPython collects generation 0 every 700 net allocations of tracked
objects. A message passing through the broker makes several of them (its ``Message``, entry,
properties, a frame or packet, their dicts and lists) and nearly all are freed by reference
counting within the same reactor turn, so the generation 0 collection, every hundred messages
or so, mostly re-walks objects about to die: it was 4.9% of the instructions of an MQTT QoS 1
message (callgrind). ``install`` raises the threshold to ``YOUNG_THRESHOLD``: one per ten
thousand allocations, each still short (it walks at most that many young objects, some
hundred microseconds), and cut 1-5% of the instructions per message in every protocol's
benchmark. Generation 1, though, is collected every ``MIDDLE_THRESHOLD`` generation 0
collections, not CPython's 10: while long-lived objects are made (1M bindings: 2.5 tracked
objects each, all surviving) each generation 0 collection hands it up to ten thousand
survivors, and ten of them made a walk of 100,000 objects, 21 ms (median) to 61 ms on the
loaded machine, every few seconds; three keep it to a third of that. ``uninstall`` puts the
previous thresholds back.

A young collection that freed (almost) nothing (fewer than ``BARREN_YOUNG`` of the young
threshold: some 2 objects per collection while 1M bindings are made) found the young objects
all live: the workload is building long-lived state (bindings, connections, subscriptions),
so its survivors are frozen at once instead of being handed to generation 1 to be walked
again: that walk of some 30,000 survivors was 4 ms of CPU, half of the broker's longest turns
at 1M bindings once the work itself was cut into 4 ms slices (``turn_slices.py``). A young
collection that frees cycles leaves its survivors to generation 1 as before, so cycles that
die a little later are still found where the workload makes them; what the rule gives up is
the few that die between a barren young collection and the next (465 objects while 1M
bindings were made), kept until a thaw.

``gc_tuning = false`` (the config key) leaves CPython's collector exactly as it is by default.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: allocated blocks grow to this multiple of what they were after the last thaw before a thaw
THAW_GROWTH = 2.0
#: ... and by at least this many blocks (pymalloc blocks of at most 512 bytes; some 200 MB
#: with their objects' other allocations): a broker just started is small, and doubling it is
#: no reason for a full scan (50,000 MQTT subscriptions stay below it; 100,000 queues and
#: 200,000 bindings do not)
THAW_MIN_BLOCKS = 2_000_000
#: the largest growth asked for between thaws after thaws that freed (almost) nothing
THAW_GROWTH_MAX = 4.0
#: a thaw "freed nothing" when its collection freed fewer objects than this share of the
#: blocks allocated when it began
BARREN_THAW = 0.01
#: a thaw also waits until the young collections since the last one have freed cycles of at
#: least this many objects per block the heap grew by: what dies in cycles while frozen is
#: of the kinds the workload makes, and the young collections see those kinds die
CYCLES_FOR_THAW = 0.01
#: net allocations of tracked objects between two generation 0 collections (CPython: 700)
YOUNG_THRESHOLD = 10_000
#: generation 0 collections between two generation 1 collections (CPython: 10)
MIDDLE_THRESHOLD = 3
#: a young collection that freed fewer objects than this share of the young threshold found
#: its objects live: they are frozen at once, not walked again by generation 1
BARREN_YOUNG = 0.01


class CollectorTuning:
    """Freezes the survivors of generation 1 and 2 collections (``install``); thaws when
    memory has doubled; collects generation 0 less often."""

    def __init__(self, thaw_growth: float = THAW_GROWTH,
                 thaw_min_blocks: int = THAW_MIN_BLOCKS) -> None:
        self.thaw_growth = thaw_growth
        self.growth = thaw_growth    # asked for before the next thaw (grows after barren ones)
        self.thaw_min_blocks = thaw_min_blocks
        self.blocks_at_thaw = 0
        self.base = 0            # allocated blocks after the last thaw (or recovery)
        self.thawed = False      # the next full collection scans everything
        self.thaws = 0
        self.cycles_freed = 0    # objects the young collections freed since the last thaw
        self.installed = False
        self.thresholds_before: tuple[int, int, int] | None = None

    @contextmanager
    def recovering(self) -> Iterator[None]:
        """Collector off while the store is recovered, then what was recovered is frozen."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            self.base = sys.getallocatedblocks()
            if was_enabled:
                gc.enable()

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._collected)
            self.thresholds_before = gc.get_threshold()
            gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, self.thresholds_before[2])
            self.installed = True

    def uninstall(self) -> None:
        """Stop freezing. What is frozen stays frozen: a broker that stops would only pay a
        full scan of its whole heap on the way out (``gc.unfreeze()`` is the caller's)."""
        if self.installed:
            gc.callbacks.remove(self._collected)
            if self.thresholds_before is not None:
                gc.set_threshold(*self.thresholds_before)
            self.installed = False

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop":
            return
        generation = info.get("generation", 0)
        if self.thawed:      # waiting for the full collection that scans everything
            if generation == 2:
                self.thawed = False
                if info.get("collected", 0) < BARREN_THAW * self.blocks_at_thaw:
                    self.growth = min(self.growth * self.thaw_growth, THAW_GROWTH_MAX)
                else:
                    self.growth = self.thaw_growth
                gc.freeze()
                self.base = sys.getallocatedblocks()
                self.cycles_freed = 0
            return
        collected = info.get("collected", 0)
        self.cycles_freed += collected
        if generation == 0:
            # young objects: most die young, those collections are short; when none died
            # in cycles the survivors are long-lived state, frozen now
            if collected < BARREN_YOUNG * gc.get_threshold()[0]:
                gc.freeze()
            return
        blocks = sys.getallocatedblocks()
        if blocks > max(self.growth * self.base, self.base + self.thaw_min_blocks) and \
                self.cycles_freed >= CYCLES_FOR_THAW * (blocks - self.base):
            self.blocks_at_thaw = blocks
            gc.unfreeze()    # CPython's next full collection scans (and frees) it all
            self.thawed = True
            self.thaws += 1
        else:
            gc.freeze()
