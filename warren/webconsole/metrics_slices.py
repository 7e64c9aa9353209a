"""Per-queue metrics written a slice of queues per step, so a scrape does not hold the reactor.

``/metrics/per-object`` with 100,000 queues is some 1.5M samples: built in one block, it held
the broker's only thread for seconds, and every other client waited that long. Here the
response is an iterator of byte chunks run by a :class:`~twisted.internet.task.Cooperator` on
the broker's clock, which runs steps for at most ``STEP_BUDGET`` seconds per reactor turn
(``warren.turn_slices``, which MQTT's retained messages on SUBSCRIBE use too).

The Prometheus text format keeps a family's samples under one ``# HELP``/``# TYPE`` header, so
the response goes family by family, each a slice of ``SLICE`` queues at a time: the header by
prometheus_client's own ``generate_latest``, the samples as it writes them (see
:func:`queue_chunks` for why not by it).

The request is the writer's consumer: a client that reads slowly pauses the work (Twisted
calls ``pauseProducing`` when the socket's buffer is full) instead of the response piling up
in memory; a client that goes away stops it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from twisted.internet.task import Cooperator, TaskFinished, TaskStopped

from warren.turn_slices import TURN_BUDGET, sliced_cooperator

log = logging.getLogger("warren.webconsole")

__all__ = ["SLICE", "STEP_BUDGET", "SlicedResponse", "Series", "families_chunk",
           "queue_chunks", "sliced_cooperator"]

#: queues per slice of a family (one step)
SLICE = 500
#: seconds of steps per reactor turn
STEP_BUDGET = TURN_BUDGET

#: (a new empty family, the value of one queue for it)
Series = tuple[Callable[[], GaugeMetricFamily | CounterMetricFamily], Callable[[Any], float]]


class _Families:
    """What ``generate_latest`` formats: a "registry" of the given families."""

    __slots__ = ("families",)

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def families_chunk(families: Iterable[Metric]) -> bytes:
    """Families in the text format (a chunk of the response)."""
    return generate_latest(_Families(families))


def queue_chunks(queues: list[tuple[str, Any]], series: list[Series]) -> Iterator[bytes]:
    """Each series over *queues* ((vhost, queue) pairs), a slice of queues per chunk; a queue
    deleted while the scrape goes on is left out of the series not written yet.

    A family's ``# HELP``/``# TYPE`` lines are prometheus_client's; its samples are written
    here, the same text as its ``generate_latest`` (labels sorted, values as Go prints
    floats) at a tenth of the cost: a queue's label text is made once for all its series,
    where the library would validate and escape both labels again for each of some 15
    samples per queue (18 µs a sample, 27 s for 100,000 queues on a loaded machine)."""
    labels: list[str] = []
    for start in range(0, len(queues), SLICE):
        labels.extend([_label_text(vhost, q.name) for vhost, q in queues[start:start + SLICE]])
        yield b""
    for new, get in series:
        family = new()
        yield families_chunk((family,))
        family.add_metric(["", ""], 0)
        name = family.samples[0].name          # a counter's samples end in _total
        for start in range(0, len(queues), SLICE):
            yield "".join([f"{name}{labels[i]} {_value(get(q))}\n"
                           for i, (_, q) in enumerate(queues[start:start + SLICE], start)
                           if not q.deleted]).encode()


def _label_text(vhost: str, queue: str) -> str:
    """``{queue="...",vhost="..."}`` escaped as the text format wants (labels sorted)."""
    return f'{{queue="{_escape(queue)}",vhost="{_escape(vhost)}"}}'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    """As ``floatToGoString``; an int below a million (almost every figure) directly."""
    if type(v) is int and v < 1_000_000:
        return f"{v}.0"
    return floatToGoString(v)


class SlicedResponse:
    """Writes *chunks* to *request* (already answered ``NOT_DONE_YET``) one step at a time
    on *cooperator*, as the request's streaming producer, and finishes it."""

    def __init__(self, request: Any, chunks: Iterator[bytes], cooperator: Cooperator) -> None:
        self.request = request
        self._paused = False
        self.task = cooperator.cooperate(self._steps(chunks))
        request.registerProducer(self, True)
        request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.task.whenDone().addCallbacks(self._done, self._failed)

    def _steps(self, chunks: Iterator[bytes]) -> Iterator[None]:
        for chunk in chunks:
            if chunk:
                self.request.write(chunk)
            yield None

    def pauseProducing(self) -> None:
        if not self._paused:
            try:
                self.task.pause()
            except TaskFinished:
                return
            self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self.task.resume()

    def stopProducing(self) -> None:
        try:
            self.task.stop()
        except TaskFinished:
            pass

    def _done(self, _: Any) -> None:
        self.request.unregisterProducer()
        self.request.finish()

    def _failed(self, failure: Any) -> None:
        if failure.check(TaskStopped):
            return                       # the client went away
        log.error("metrics response abandoned: %s", failure.getErrorMessage())
        self.request.unregisterProducer()
        self.request.loseConnection()
