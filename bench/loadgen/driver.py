"""One run: a publisher process and consumer processes, and the loops that pace them.

Publisher and consumers are separate processes (forked, each with its own event loop) so the
client can use both cores and a busy consumer never delays a publish. They share, in shared
memory, what pacing needs: how many messages each consumer stream has received (closed loop:
the publisher stays at most ``max_lag`` ahead of the slowest stream) and how many were sent
(consumers know when they have everything). Results go back to the parent through a queue.

Pacing, in the publisher, one batch at a time:
* open loop at a fixed ``rate``: message i is due at start + i / rate;
* open loop as fast as possible (``rate`` 0): as fast as the socket takes it;
* closed loop (``max_lag``): never more than max_lag unreceived messages;
* confirms (``window``): never more than window unconfirmed messages.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
import traceback
from dataclasses import dataclass, field

from bench.loadgen import amqp, mqtt, stomp
from bench.loadgen.measure import CpuSample, Tally

PROTOCOLS = {"amqp": amqp, "stomp": stomp, "mqtt": mqtt}
WATCH_EVERY = 0.02  # s: how often consumers look at the shared counters
LAG_POLL = 0.0005  # s: how often a blocked closed-loop publisher looks again


@dataclass
class Settings:
    """Everything one run needs; made by the CLI from a scenario and the options."""

    protocol: str
    scenario: str
    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"
    size: int = 100
    seconds: float = 10.0
    rate: float = 0.0  # messages/s; 0 = as fast as possible
    max_lag: int = 0  # 0 = open loop
    batch: int = 100  # messages per socket write
    window: int = 0  # unconfirmed messages allowed; 0 = no confirms/receipts/PUBACKs awaited
    persistent: bool = False
    fanout: bool = False
    streams: int = 1  # consumer connections (fanout: one queue each)
    consumer_procs: int = 1
    prefetch: int = 1000
    autoack: bool = False
    qos: int = 0  # MQTT
    stomp_ack: str = "client-individual"
    drain: float = 30.0  # s: longest wait for the last messages after the publish window
    idle_timeout: float = 3.0  # s: the drain also ends when nothing arrived for this long
    setup_timeout: float = 60.0
    tag: int = 0
    label: str = ""
    broker_pgid: int | None = None


@dataclass
class Shared:
    """The cross-process state (made before forking)."""

    received: object  # RawArray('q'): per consumer stream, unique messages received
    sent: object  # RawValue('q')
    start_ns: object  # RawValue('q'): when the publish window opened
    ready: list = field(default_factory=list)  # one Event per consumer process
    started: object = None  # Event: publish window open
    window_over: object = None  # Event: publish window closed
    done: object = None  # Event: publisher finished (final `sent` is set)
    results: object = None  # Queue of (role, payload)


# -- publisher --------------------------------------------------------------------------------
async def publish(settings: Settings, shared: Shared) -> dict:
    """Once every consumer is subscribed: connect, publish for the window at the settings'
    pace, wait for the last confirms, and say how many were sent (the consumers drain to it)."""
    protocol = PROTOCOLS[settings.protocol]
    deadline = time.monotonic() + settings.setup_timeout
    for event in shared.ready:
        while not event.wait(0.05):
            if time.monotonic() > deadline:
                raise RuntimeError("consumers not ready in time")
            await asyncio.sleep(0)
    client = await protocol.Publisher.open(settings.host, settings.port, settings,
                                           settings.tag)
    await client.setup()
    client.running = True
    sent = 0
    began_ns = time.monotonic_ns()
    shared.start_ns.value = began_ns
    shared.started.set()
    end = time.monotonic() + settings.seconds
    received = shared.received
    while time.monotonic() < end:
        client.check()
        room = settings.batch
        if settings.rate:
            due = int((time.monotonic_ns() - began_ns) * settings.rate / 1e9) + 1 - sent
            if due <= 0:
                await asyncio.sleep(min(end - time.monotonic(), 1 / settings.rate))
                continue
            room = min(room, due)
        if settings.max_lag:
            room = min(room, settings.max_lag - (sent - min(received)))
            if room <= 0:
                await asyncio.sleep(LAG_POLL)
                continue
        if settings.window:
            room = min(room, settings.window - (sent - client.confirmed))
            if room <= 0:
                client.progress.clear()
                try:
                    await asyncio.wait_for(client.progress.wait(), max(end - time.monotonic(),
                                                                       0.001))
                except asyncio.TimeoutError:
                    pass
                continue
        client.publish(range(sent, sent + room))
        sent += room
        shared.sent.value = sent
        await client.drain()
        await asyncio.sleep(0)  # let confirms in
    window_end_ns = time.monotonic_ns()
    shared.window_over.set()
    confirm_deadline = time.monotonic() + settings.drain
    while settings.window and client.confirmed + client.nacked < sent and client.lost is None:
        client.progress.clear()
        remaining = confirm_deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(client.progress.wait(), remaining)
        except asyncio.TimeoutError:
            break
    shared.sent.value = sent
    shared.done.set()
    result = {"sent": sent, "confirmed": client.confirmed, "nacked": client.nacked,
              "window_s": (window_end_ns - began_ns) / 1e9}
    await client.close()
    return result


# -- consumers --------------------------------------------------------------------------------
async def consume(settings: Settings, shared: Shared, streams: list[int], ready) -> list[dict]:
    """Open and subscribe `streams` (one connection each), signal `ready`, count until the
    drain ends, tear down (the run's queues are deleted), and return each stream's tally."""
    protocol = PROTOCOLS[settings.protocol]
    clients = []
    try:
        for stream in streams:
            client = await protocol.Consumer.open(settings.host, settings.port, settings,
                                                  settings.tag, stream)
            clients.append(client)
            await client.setup()
            client.running = True

            def publish_count(tally: Tally, stream=stream) -> None:
                shared.received[stream] = tally.received
            client.on_read = publish_count
        ready.set()
        await watch(settings, shared, clients)
    finally:
        for client in clients:
            await client.teardown()
    return [client.tally.summary() | {"stream": client.stream} for client in clients]


async def watch(settings: Settings, shared: Shared, clients: list) -> None:
    """Return once every stream has all sent messages, or the drain ran out; note the count
    each stream had when the publish window closed."""
    window_noted = False
    done_at = last_total = None
    last_change = time.monotonic()
    while True:
        await asyncio.sleep(WATCH_EVERY)
        for client in clients:
            client.check()
        now = time.monotonic()
        if not window_noted and shared.window_over.is_set():
            window_noted = True
            for client in clients:
                client.tally.received_in_window = client.tally.received
        total = sum(client.tally.received for client in clients)
        if total != last_total:
            last_total, last_change = total, now
        if not shared.done.is_set():
            continue
        done_at = done_at or now
        if all(client.tally.received >= shared.sent.value for client in clients):
            return
        if now - last_change > settings.idle_timeout or now - done_at > settings.drain:
            for client in clients:
                client.tally.drain_timed_out = True
            return


# -- processes --------------------------------------------------------------------------------
def _child(role: str, coroutine_factory, results) -> None:
    try:
        results.put((role, asyncio.run(coroutine_factory())))
    except BaseException as error:  # anything: the parent must hear of it, not wait forever
        reason = str(error) or type(error).__name__
        if not isinstance(error, (OSError, RuntimeError, asyncio.TimeoutError)):
            reason += "\n" + traceback.format_exc()
        results.put((role, {"error": f"{role}: {reason}"}))


def run(settings: Settings) -> dict:
    """Run one measurement; the raw figures of publisher and consumers plus CPU samples."""
    ctx = multiprocessing.get_context("fork")
    shared = Shared(received=ctx.RawArray("q", settings.streams), sent=ctx.RawValue("q", 0),
                    start_ns=ctx.RawValue("q", 0), started=ctx.Event(),
                    window_over=ctx.Event(), done=ctx.Event(), results=ctx.Queue())
    procs_n = max(1, min(settings.consumer_procs, settings.streams))
    groups = [list(range(settings.streams))[i::procs_n] for i in range(procs_n)]
    shared.ready = [ctx.Event() for _ in groups]
    children = []
    for index, group in enumerate(groups):
        children.append(ctx.Process(target=_child, daemon=True, args=(
            f"consumer{index}",
            lambda group=group, index=index: consume(settings, shared, group, shared.ready[index]),
            shared.results)))
    children.append(ctx.Process(target=_child, daemon=True, args=(
        "publisher", lambda: publish(settings, shared), shared.results)))
    for child in children:
        child.start()
    pids = [child.pid for child in children]
    results: dict[str, dict] = {}
    samples: list[CpuSample] = []
    try:
        for event, limit in ((shared.started, settings.setup_timeout * 2),
                             (shared.window_over, settings.seconds + 30)):
            if not _await_event(event, limit, shared.results, results, len(children)):
                break
            samples.append(CpuSample.take(settings.broker_pgid, pids))
        overall = settings.seconds + settings.drain * 2 + settings.setup_timeout * 2 + 30
        deadline = time.monotonic() + overall
        while len(results) < len(children) and not any("error" in r for r in results.values()):
            try:
                role, payload = shared.results.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                results["timeout"] = {"error": "a loadgen process did not finish in time"}
                break
            results[role] = payload
        if len(samples) == 2:
            samples.append(CpuSample.take(settings.broker_pgid, []))
    finally:
        failed = any("error" in r for r in results.values())
        for child in children:
            child.join(0.2 if failed else 10)
            if child.is_alive():
                child.kill()
                child.join()
    errors = [r["error"] for r in results.values() if "error" in r]
    return {"errors": errors, "start_ns": shared.start_ns.value,
            "publisher": results.get("publisher"),
            "consumers": [stream for role, streams in sorted(results.items())
                          if role.startswith("consumer") for stream in streams],
            "samples": samples}


def _await_event(event, limit: float, results_queue, results: dict, expected: int) -> bool:
    """Wait for `event`; False (with the results collected) if a child reports first."""
    deadline = time.monotonic() + limit
    while not event.wait(0.05):
        try:
            role, payload = results_queue.get_nowait()
        except queue.Empty:
            if time.monotonic() > deadline:
                results["timeout"] = {"error": "the run did not reach its next stage in time"}
                return False
            continue
        results[role] = payload
        if "error" in payload:
            return False
    return True
