"""Cost that grows with the work: bindings, MQTT subscriptions, and an unrelated client meanwhile.

    python -m bench.scale core --sizes 10000 50000
        binds N bindings on one exchange through the core (in-process Broker, no network),
        then unbinds them: CPU seconds in total and microseconds per operation, per exchange
        type.
    python -m bench.scale mqtt --sizes 10000 --mode one|many|both [--retained K]
        a `warren run` subprocess; a paho client subscribes N filters in one SUBSCRIBE
        (``one``) or in N SUBSCRIBEs sent back to back (``many``) and waits for the SUBACKs,
        while a second client times QoS 1 PUBLISH -> PUBACK round trips (max and p99 quoted).
        ``--retained K``: K retained messages first, spread over the filters (each filter's
        walk of the retained tree then runs, and K messages follow the SUBACK).
    python -m bench.scale mqtt --sizes 50000 --mode unsub|persist|resume|close|burst|drop
        the same broker and probe, over raw sockets: one UNSUBSCRIBE of N filters (after a
        SUBSCRIBE of them, timed too but without the probe), one SUBSCRIBE of N filters by a
        persistent session (clean session false: its SUBACK waits for its record on disk),
        that session's CONNECT again after a DISCONNECT (its subscriptions bound again), the
        DISCONNECT of a clean session of N filters (its queue's bindings and its
        subscriptions released in slices after it; the probe runs 2 s more), N small QoS 1
        PUBLISHes sent in one write, or N connections (a subscription each) closed at once:
        the time to the answer(s), the probe's round trips, and the broker's collections
        (objects freed) and longest reactor turns (``bench.gc_probe``).
    python -m bench.scale deliver --sizes 5000 50000
        a client with N filters receives 2,000 messages on 2,000 different matching topics:
        seconds (each new topic is matched against the client's subscriptions).
    python -m bench.scale topic --sizes 1000 10000
        the topic exchange's trie alone: N bindings (MQTT-like: literal, ``*`` and ``#``), 200k
        matches over 1,000 hot routing keys, with a bind or an unbind every 20 matches (clients
        subscribing meanwhile) and without: microseconds per match and per bind/unbind.
    python -m bench.scale purge --sizes 1000000
        a queue holding N messages (in-process core) is purged / deleted: the call, then the
        reactor turns that release the rest.
    python -m bench.scale purge-paged --sizes 1000000
        the same of a durable queue of N persistent messages paged out under a 4 MiB paging
        budget, with the journal as its store: the call and the longest turn after it.
    python -m bench.scale import --sizes 50000
        a definitions document of N queues and N bindings (in-process core) imported as the
        API does, a slice per reactor turn: the first call, then each turn (median, max).
    python -m bench.scale objects --sizes 10000 100000 [--brokers warren rabbitmq]
        N queues declared, then N topic and N direct bindings (over 1,000 of the queues) made
        over one AMQP channel, on warren and on RabbitMQ: microseconds per operation (each a
        round trip), resident bytes per queue and per binding, and an MQTT client's round trips
        meanwhile.
    python -m bench.scale retained --sizes 10000 100000
        N MQTT retained messages (in-process, the broker's RetainedStore): microseconds per
        retain, then per SUBSCRIBE lookup of a literal filter, of wildcard filters matching one,
        N/100 and all of them, beside the scan of every topic that the lookup was before.
    python -m bench.scale retained-subscribe --sizes 100000 1000000
        a `warren run` subprocess holding N retained messages (one per topic, 20 bytes); a
        client subscribes ``#`` (QoS 0) and reads them all: the time to the SUBACK and to the
        last one, while another MQTT client times its round trips.
    python -m bench.scale metrics --sizes 10000 100000
        a `warren run` subprocess with N queues: milliseconds and bytes of GET /metrics,
        /metrics/per-object and /metrics/detailed, and an MQTT client's round trips meanwhile
        (the per-queue ones are written a slice of queues per step).
    python -m bench.scale big --sizes 100000 1000000 --connections 10000 [--brokers ...]
        on warren and on RabbitMQ: N topic (``a.N.#``) and N direct (``kN``) bindings over
        1,000 queues, sent over one AMQP connection 1,000 at a time (pipelined: the broker's
        cost, not a round trip's), then C concurrent AMQP connections (each with a channel,
        kept open, then all dropped at once): microseconds per operation, resident bytes per
        item, and an MQTT client's round trips meanwhile (while binding, then for 20 s with the
        broker idle; the worst one's start is printed); warren's garbage collections
        (``bench.gc_probe``) after each run. ``--unbind``: the bindings are then unbound the
        same way (before the idle part), microseconds per queue.unbind. ``--sizes 0``: the
        connections only.
    python -m bench.scale churn --sizes 2000
        a `warren run` subprocess under ``bench.gc_probe``; N AMQP 0-9-1 connections, then N
        STOMP ones, opened one after another, each with an exclusive queue and a consumer (a
        subscription), half closed by the protocol and half dropped: the objects the
        broker's collections freed per connection (what a closed connection leaves in
        cycles, the evidence ``gc_tuning`` waits for before a thaw) and its thaws.

Nothing here is asserted; the figures are for the report and docs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.proc_memory import group_bytes


_COLLECTOR: list = []


def _core_broker():
    """An in-process broker on a fake clock, CPython's collector tuned as ``warren run``
    tunes it (``gc_tuning``), so a turn's time is the broker's as it runs."""
    from twisted.internet.task import Clock

    from warren.amqp.properties import CODEC
    from warren.broker.broker import Broker
    from warren.gc_tuning import CollectorTuning
    if not _COLLECTOR:
        _COLLECTOR.append(CollectorTuning())
        _COLLECTOR[0].install()
    b = Broker(clock=Clock(), codec=CODEC)
    b.ensure_defaults()
    return b


def bench_core(sizes: list[int]) -> None:
    """Timed in this process's CPU time (single-threaded, no I/O): on a loaded machine the
    wall clock counts the other processes' share too."""
    for kind, exchange, key in (("topic", "amq.topic", lambda i: f"sensor.{i}.#"),
                                ("direct", "amq.direct", lambda i: f"k{i}"),
                                ("fanout", "amq.fanout", lambda i: f"k{i}"),
                                ("headers", "amq.headers", lambda i: f"k{i}")):
        for n in sizes:
            broker = _core_broker()
            vh = broker.vhost("/")
            q = vh.declare_queue("q")
            args = (lambda i: {"x-match": "any", "h": i}) if kind == "headers" else (lambda i: {})
            t0 = time.process_time()
            for i in range(n):
                vh.bind(exchange, q, key(i), args(i))
            t_bind = time.process_time() - t0
            t0 = time.process_time()
            for i in range(n):   # duplicates: each is found, nothing added
                vh.bind(exchange, q, key(i), args(i))
            t_dup = time.process_time() - t0
            t0 = time.process_time()
            for i in range(n):
                vh.unbind(exchange, q, key(i), args(i))
            t_unbind = time.process_time() - t0
            # many queues on one key, then the queues deleted (Queue.bindings / type removal)
            queues = [vh.declare_queue(f"q{i}") for i in range(n)]
            t0 = time.process_time()
            for qq in queues:
                vh.bind(exchange, qq, "same", args(0))
            t_same = time.process_time() - t0
            t0 = time.process_time()
            for qq in queues:
                vh.delete_queue(qq.name)
            t_del = time.process_time() - t0
            print(f"core {kind:7} n={n:>7}: bind {t_bind:7.2f}s ({t_bind / n * 1e6:6.1f} us/op)"
                  f"  re-bind {t_dup:6.2f}s ({t_dup / n * 1e6:6.1f} us/op)"
                  f"  unbind {t_unbind:6.2f}s ({t_unbind / n * 1e6:6.1f} us/op)"
                  f"  n queues on one key: bind {t_same / n * 1e6:6.1f} us/op,"
                  f" delete queue {t_del / n * 1e6:6.1f} us/op", flush=True)


def bench_topic(sizes: list[int], matches: int = 200_000, hot: int = 1000,
                churn_every: int = 20) -> None:
    from warren.exchange.interface import Binding
    from warren.exchange.topic import TopicTrie

    def pattern(i: int) -> str:
        return (f"dev.{i}.temp", f"dev.{i}.*", f"dev.*.{i % 50}", f"site.{i % 10}.#")[i % 4]

    keys = [f"dev.{i}.{i % 50}" for i in range(hot)]
    for n in sizes:
        for churn in (False, True):
            trie = TopicTrie()
            bindings = [Binding("amq.topic", object(), pattern(i)) for i in range(n)]
            for b in bindings:
                trie.insert(b.routing_key, b)
            extra = [Binding("amq.topic", object(), pattern(n + i)) for i in range(n)]
            changes = change_time = 0.0
            t0 = time.perf_counter()
            for i in range(matches):
                trie.match(keys[i % hot])
                if churn and i % churn_every == 0:
                    b = extra[(i // churn_every) % n]
                    t1 = time.perf_counter()
                    if (i // churn_every // n) % 2 == 0:
                        trie.insert(b.routing_key, b)
                    else:
                        trie.remove(b.routing_key, b)
                    change_time += time.perf_counter() - t1
                    changes += 1
            total = time.perf_counter() - t0
            match_us = (total - change_time) / matches * 1e6
            line = f"topic n={n:>6} {'churn' if churn else 'still'}: match {match_us:5.2f} us"
            if churn:
                line += f"  bind/unbind {change_time / changes * 1e6:6.1f} us ({changes:.0f})"
            print(line, flush=True)


def bench_purge(sizes: list[int]) -> None:
    from warren.amqp.properties import CODEC
    from warren.model.message import Message, Properties
    for n in sizes:
        broker = _core_broker()
        vh = broker.vhost("/")
        for op in ("purge", "delete"):
            q = vh.declare_queue("big")
            pub = broker.publisher("/", None)
            ex = pub.exchange("")
            for _ in range(n):
                pub.publish(ex, Message("", "big", b"x", codec=CODEC, props=Properties()))
            clock = broker.clock
            clock.advance(0)
            t0, c0 = time.perf_counter(), time.thread_time()
            if op == "purge":
                q.purge()
            else:
                vh.delete_queue("big")
            first = time.thread_time() - c0
            slices, longest = 0, 0.0
            while clock.calls:   # the rest, one reactor turn's call at a time
                t1 = time.thread_time()
                call = clock.calls.pop(0)
                call.called = 1
                call.func(*call.args, **call.kw)
                longest = max(longest, time.thread_time() - t1)
                slices += 1
            total = time.perf_counter() - t0
            if op == "purge":
                vh.delete_queue("big")
                while clock.getDelayedCalls():
                    clock.advance(0)
            print(f"core {op} of a queue of n={n}: the call {first * 1e3:.0f} ms of CPU, then"
                  f" {slices} more turns (longest {longest * 1e3:.1f} ms of CPU); {total:.3f}s"
                  " in all;"
                  f" memory_used after {broker.memory_used}", flush=True)


def bench_purge_paged(sizes: list[int], budget: int = 4 * 1024 * 1024) -> None:
    """A durable queue of N persistent messages, paged out (the journal as its store, a
    paging budget of ``budget`` bytes), purged / deleted: the call, then each reactor turn
    that follows (the broker's releases and the journal's), the longest quoted."""
    from twisted.internet.task import Clock

    from warren.amqp.properties import CODEC
    from warren.broker.broker import Broker
    from warren.model.message import Message, Properties
    from warren.store.journal.store import JournalStore
    for n in sizes:
        for op in ("purge", "delete"):
            with tempfile.TemporaryDirectory(prefix="bench-purge-") as data:
                store_clock = Clock()   # the journal's turns, run one by one below
                store = JournalStore(data, reactor=store_clock)
                store.open()
                broker = Broker(clock=Clock(), codec=CODEC, store=store, paging_budget=budget)
                broker.recover()
                vh = broker.vhost("/")
                q = vh.declare_queue("big", durable=True)
                pub = broker.publisher("/", None)
                ex = pub.exchange("")
                props = Properties(delivery_mode=2)
                for i in range(n):
                    pub.publish(ex, Message("", "big", b"x" * 100, codec=CODEC, props=props))
                    if i % 10_000 == 0:
                        _turns_of(broker.clock, store_clock, store)
                _turns_of(broker.clock, store_clock, store)
                paged = q.ready.paged
                t0 = time.perf_counter()
                count = q.purge() if op == "purge" else vh.delete_queue("big")
                first = time.perf_counter() - t0
                names: list[str] = []
                times = _turns_of(broker.clock, store_clock, store, names)
                total = time.perf_counter() - t0
                longest = names[times.index(max(times))] if times else "-"
                print(f"paged {op} of a durable queue of n={n} ({paged} paged out, {count} "
                      f"counted): the call {first * 1e3:.0f} ms, then {len(times)} turns "
                      f"(median {statistics.median(times or [0]) * 1e3:.1f} ms, longest "
                      f"{max(times, default=0) * 1e3:.0f} ms: {longest}); {total:.2f}s in all; "
                      f"memory_used after {broker.memory_used}, journal messages "
                      f"{store.stats()['journal_messages']:.0f}", flush=True)
                store.close()


def _turns_of(clock, store_clock, store, names: list[str] | None = None) -> list[float]:
    """Reactor turns of a core broker and its journal on fake clocks, one call at a time
    (the journal's writes done by a blocking flush before each); their durations."""
    times = []
    while True:
        store.flush()   # cancels the journal's own flush call
        pending = [c for c in (clock, store_clock) if c.calls]
        if not pending:
            return times
        source = pending[0]
        call = source.calls.pop(0)
        call.called = 1
        t = time.perf_counter()
        call.func(*call.args, **call.kw)
        times.append(time.perf_counter() - t)
        if names is not None:
            names.append(getattr(call.func, "__qualname__", repr(call.func)))


def bench_retained(sizes: list[int], lookups: int = 200) -> None:
    from warren.mqtt.retained import RetainedMessage, RetainedStore
    from warren.mqtt.topics import filter_matches
    for n in sizes:
        broker = _core_broker()
        store = RetainedStore(broker)
        topics = [f"site/{i % 100}/dev/{i}/temp" for i in range(n)]
        t0 = time.perf_counter()
        for t in topics:
            store.put("/", RetainedMessage(t, b"21.5", 1))
        t_put = time.perf_counter() - t0
        line = f"retained n={n:>7}: retain {t_put / n * 1e6:5.1f} us;"
        for label, topic_filter in (("literal", f"site/7/dev/{n // 2 + 7}/temp"),
                                    ("+ (1 match)", f"site/+/dev/{n // 2 + 7}/temp"),
                                    ("+ (n/100)", "site/7/dev/+/temp"),
                                    ("# (all)", "#")):
            runs = lookups if label != "# (all)" else 3
            t0 = time.perf_counter()
            for _ in range(runs):
                found = store.matching("/", topic_filter, 0.0)
            t_tree = (time.perf_counter() - t0) / runs
            t0 = time.perf_counter()
            for _ in range(3):
                [t for t in topics if filter_matches(topic_filter, t)]
            t_scan = (time.perf_counter() - t0) / 3
            line += (f"  {label}: {len(found)} in {t_tree * 1e6:8.0f} us"
                     f" (scan {t_scan * 1e3:6.1f} ms)")
        print(line, flush=True)


def _mqtt_raw(port: int, client_id: str):
    """A socket that has sent CONNECT and read the CONNACK, and a parser for what follows."""
    import socket

    from warren.mqtt.codec import Connect, MqttParser, encode
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)
    sock.sendall(encode(Connect(client_id=client_id, username="guest", password=b"guest"), 4))
    parser = MqttParser(protocol_level=4)
    while not parser.feed(sock.recv(65536)):
        pass
    return sock, parser


def bench_retained_subscribe(sizes: list[int], batch: int = 10_000) -> None:
    from warren.mqtt.codec import PingReq, PingResp, Publish, SubAck, Subscribe, Subscription
    from warren.mqtt.codec import encode

    from bench.brokers import Warren
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            broker = Warren(Path(tmp), command=[sys.executable, "-m", "warren"])
            broker.start()
            try:
                port = broker.ports["mqtt"]
                sock, parser = _mqtt_raw(port, "retainer")
                t0 = time.perf_counter()
                for start in range(0, n, batch):
                    sock.sendall(b"".join(
                        encode(Publish(f"site/{i % 100}/dev/{i}/temp", b"21.5 C, 40 % RH....",
                                       0, retain=True), 4)
                        for i in range(start, min(n, start + batch))) + encode(PingReq(), 4))
                    while not any(isinstance(p, PingResp) for p in parser.feed(sock.recv(65536))):
                        pass
                t_retain = time.perf_counter() - t0
                sock.close()
                probe = RoundTrips(port)
                probe.start()
                time.sleep(0.5)   # a few samples of the quiet broker first
                sock, parser = _mqtt_raw(port, "wide-subscriber")
                t0 = time.perf_counter()
                sock.sendall(encode(Subscribe(1, (Subscription("#", 0),)), 4))
                got, t_suback = 0, None
                while got < n:
                    for p in parser.feed(sock.recv(1 << 20)):
                        if isinstance(p, SubAck):
                            t_suback = time.perf_counter() - t0
                        elif isinstance(p, Publish) and p.retain:   # not the probe's
                            got += 1
                dt = time.perf_counter() - t0
                sock.close()
                print(f"retained-subscribe n={n:>8}: retained in {t_retain:6.1f} s; '#' SUBACK"
                      f" after {t_suback * 1e3:7.1f} ms, all {got} in {dt:6.2f} s"
                      f" ({dt / n * 1e6:4.1f} us each); {probe.finish()}", flush=True)
            finally:
                broker.stop()


def _probe_process(port: int, conn, stop) -> None:
    """In its own process (no GIL shared with the big client): QoS 1 PUBLISH -> PUBACK round
    trips to a topic nobody reads, until ``stop``; the samples go back through ``conn``."""
    import paho.mqtt.client as mqtt
    acked = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rtt-probe")
    client.on_publish = lambda *a: acked.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    samples = []
    conn.send("ready")
    began = time.perf_counter()
    while not stop.is_set():
        acked.clear()
        t0 = time.perf_counter()
        client.publish("probe/rtt", b"x", qos=1)
        if not acked.wait(300):
            break
        samples.append((time.perf_counter() - t0, t0 - began))
        time.sleep(0.005)
    client.loop_stop()
    client.disconnect()
    conn.send(samples)


class RoundTrips:
    """A second MQTT client, in another process, timing QoS 1 PUBLISH -> PUBACK."""

    def __init__(self, port: int) -> None:
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self.parent, child = ctx.Pipe()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=_probe_process, args=(port, child, self.stop),
                                daemon=True)

    def start(self) -> None:
        self.proc.start()
        self.parent.recv()   # connected

    def finish(self) -> str:
        self.stop.set()
        timed = self.parent.recv()     # (round trip, when it began: seconds after the first)
        self.proc.join(30)
        if not timed:
            return "no round trip"
        s = sorted(rtt for rtt, _ in timed)
        p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
        worst, at = max(timed)
        return (f"probe round trips: n={len(s)} median {statistics.median(s) * 1e3:.1f} ms"
                f" p99 {p99 * 1e3:.1f} ms max {worst * 1e3:.1f} ms"
                f" (began {at:.2f} s after the first)")


def _retain(port: int, n: int, count: int) -> None:
    """``count`` retained QoS 1 messages, one per topic, spread over the filters of
    ``bench_mqtt`` (``bench/<i>/+/temp``), all acknowledged before it returns."""
    import paho.mqtt.client as mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="retainer")
    client.connect("127.0.0.1", port)
    client.loop_start()
    step = max(1, n // count)
    infos = [client.publish(f"bench/{i * step % n}/r{i}/temp", b"retained", qos=1, retain=True)
             for i in range(count)]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def bench_mqtt(sizes: list[int], modes: list[str], retained: int = 0) -> None:
    from bench.gc_probe import summary as gc_summary, turns_summary

    from bench.brokers import Warren
    for n in sizes:
        for mode in modes:
            with tempfile.TemporaryDirectory() as tmp:
                gc_log = str(Path(tmp) / "gc.log")
                broker = Warren(Path(tmp), command=[sys.executable, "-m", "bench.gc_probe",
                                                    gc_log])
                broker.start()
                try:
                    port = broker.ports["mqtt"]
                    if mode in ("unsub", "persist", "burst", "drop", "resume", "close"):
                        line = _mqtt_turn_work(port, n, mode, RoundTrips(port),
                                               broker.process.pid)
                    else:
                        line = _mqtt_subscribe_work(port, n, mode, retained)
                    print(f"mqtt n={n:>6} {mode:4}: {line}", flush=True)
                finally:
                    broker.stop()
                print(f"    broker's {gc_summary(gc_log)}\n    {turns_summary(gc_log + '.turns')}",
                      flush=True)


def _mqtt_subscribe_work(port: int, n: int, mode: str, retained: int) -> str:
    """``bench_mqtt``'s modes ``one`` and ``many``: a paho client subscribes N filters in one
    SUBSCRIBE or in N, the probe timing its round trips meanwhile; one line."""
    import paho.mqtt.client as mqtt
    if retained:
        _retain(port, n, retained)
    probe = RoundTrips(port)
    probe.start()
    time.sleep(0.5)   # a few samples of the quiet broker first
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="big-sub")
    done = threading.Event()
    pending = {"left": 1 if mode == "one" else n}

    def on_subscribe(*_a: object) -> None:
        pending["left"] -= 1
        if pending["left"] == 0:
            done.set()
    client.on_subscribe = on_subscribe
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    filters = [(f"bench/{i}/+/temp", 1) for i in range(n)]
    t0 = time.perf_counter()
    if mode == "one":
        client.subscribe(filters)
    else:
        for f in filters:
            client.subscribe(f[0], f[1])
    ok = done.wait(600)
    dt = time.perf_counter() - t0
    line = (f"{'all SUBACKs in' if ok else 'TIMEOUT after'} {dt:7.2f}s"
            f" ({dt / n * 1e6:6.1f} us/filter); {probe.finish()}")
    client.loop_stop()
    client.disconnect()
    return line


def _mqtt_turn_work(port: int, n: int, mode: str, probe: "RoundTrips",
                    pid: int | None = None) -> str:
    """The work of ``bench_mqtt``'s modes ``unsub``, ``persist`` and ``burst`` over a raw
    socket (warren's codec, so nothing of a client library's pacing), the probe started once
    the part that is not measured is done; one line. With the broker's ``pid``, its CPU
    time per filter (``unsub``: of the SUBSCRIBE and of the UNSUBSCRIBE), which a loaded
    machine's wall clock blurs."""
    from bench.proc_cpu import process_cpu_seconds as cpu_seconds

    def cpu() -> float:
        return cpu_seconds(pid) if pid is not None else 0.0
    from warren.mqtt.codec import (Connect, Disconnect, MqttParser, PingReq, PingResp, PubAck,
                                   Publish, SubAck, Subscribe, Subscription, UnsubAck,
                                   Unsubscribe, encode)
    import socket
    if mode == "drop":
        return _mqtt_drop(port, n, probe)
    sock = socket.create_connection(("127.0.0.1", port), timeout=600)
    sock.sendall(encode(Connect(client_id="big-sub", username="guest", password=b"guest",
                                clean_start=mode not in ("persist", "resume")), 4))
    parser = MqttParser(protocol_level=4)

    def until(kind: type, count: int = 1) -> None:
        while count:
            count -= sum(1 for p in parser.feed(sock.recv(1 << 20)) if isinstance(p, kind))
    while not parser.feed(sock.recv(65536)):
        pass
    filters = [f"bench/{i}/+/temp" for i in range(n)]
    subscribed = ""
    if mode in ("unsub", "resume", "close"):
        t0, c0 = time.perf_counter(), cpu()
        sock.sendall(encode(Subscribe(1, tuple(Subscription(f, 1) for f in filters)), 4))
        until(SubAck)
        dt, dc = time.perf_counter() - t0, cpu() - c0
        subscribed = (f"SUBACK first in {dt:7.2f}s ({dt / n * 1e6:6.1f} us each, broker CPU"
                      f" {dc / n * 1e6:5.1f} us), then ")
    if mode == "resume":
        sock.sendall(encode(Disconnect(), 4))
        while sock.recv(65536):
            pass
        sock.close()
        time.sleep(2)   # the old connection's end is done with before the resume
    probe.start()
    time.sleep(0.5)   # a few samples of the quiet broker first
    t0, c0 = time.perf_counter(), cpu()
    if mode == "unsub":
        sock.sendall(encode(Unsubscribe(2, tuple(filters)), 4))
        until(UnsubAck)
        what = f"UNSUBACK (broker CPU {(cpu() - c0) / n * 1e6:5.1f} us each)"
    elif mode == "persist":
        sock.sendall(encode(Subscribe(1, tuple(Subscription(f, 1) for f in filters)), 4))
        until(SubAck)
        what = "SUBACK (clean session false)"
    elif mode == "close":
        sock.sendall(encode(Disconnect(), 4))
        while sock.recv(65536):
            pass
        what = "the connection's close after its DISCONNECT"
    elif mode == "resume":
        sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        parser = MqttParser(protocol_level=4)
        sock.sendall(encode(Connect(client_id="big-sub", username="guest", password=b"guest",
                                    clean_start=False), 4) + encode(PingReq(), 4))
        until(PingResp)
        what = "CONNACK and PINGRESP of the session resumed"
    else:
        sock.sendall(b"".join(encode(Publish(f"bench/{i % 100}/x/temp", b"21.5", 1,
                                             packet_id=i % 65535 + 1), 4) for i in range(n)))
        until(PubAck, n)
        what = "all PUBACKs (one write)"
    dt = time.perf_counter() - t0
    if mode in ("persist", "close"):
        time.sleep(2)   # the session's record is written (or its end released) after it
    sock.close()
    return f"{subscribed}{what} in {dt:7.2f}s ({dt / n * 1e6:6.1f} us each); {probe.finish()}"


def _mqtt_drop(port: int, n: int, probe: "RoundTrips") -> str:
    """N MQTT connections, each with a subscription of its own (clean sessions), held, then
    all closed at once; the probe's round trips from just before the drop to 3 s after."""
    import socket

    from warren.mqtt.codec import Connect, MqttParser, SubAck, Subscribe, Subscription, encode
    _raise_fd_limit(2 * n + 100)
    socks = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        sock.sendall(encode(Connect(client_id=f"drop-{i}", username="guest",
                                    password=b"guest"), 4)
                     + encode(Subscribe(1, (Subscription(f"drop/{i}/+", 1),)), 4))
        parser = MqttParser(protocol_level=4)
        while not any(isinstance(p, SubAck) for p in parser.feed(sock.recv(4096))):
            pass
        socks.append(sock)
    probe.start()
    time.sleep(0.5)   # a few samples of the quiet broker first
    t0 = time.perf_counter()
    for sock in socks:
        sock.close()
    dt = time.perf_counter() - t0
    time.sleep(3)
    return f"{n} connections closed ({dt:.2f} s to close them here); {probe.finish()}"


def _group_cpu(pid: int) -> float:
    """CPU seconds of the broker process and its children (RabbitMQ's beam), so far: what a
    loaded machine's wall clock blurs."""
    from bench.proc_cpu import process_cpu_seconds as cpu_seconds
    total = cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for child in children:
        try:
            total += _group_cpu(child)
        except OSError:
            pass
    return total


def _group_rss(pid: int) -> int:
    """Bytes resident in the process group ``pid`` leads (a broker and what it spawned)."""
    return group_bytes(pid, "VmRSS")


def bench_objects(sizes: list[int], brokers: list[str], rabbitmq_server: str | None) -> None:
    """N queues declared, then N topic and N direct bindings made, over one AMQP channel (each
    a round trip), on warren and on RabbitMQ, with an MQTT client's round trips meanwhile."""
    import pika

    from bench.brokers import RabbitMQ, Warren
    for n in sizes:
        for name in brokers:
            with tempfile.TemporaryDirectory() as tmp:
                broker = (Warren(Path(tmp), command=[sys.executable, "-m", "warren"])
                          if name == "warren" else RabbitMQ(Path(tmp), program=rabbitmq_server))
                broker.start()
                try:
                    conn = pika.BlockingConnection(pika.ConnectionParameters(
                        "127.0.0.1", broker.ports["amqp"], blocked_connection_timeout=600,
                        heartbeat=0))
                    ch = conn.channel()
                    base = _group_rss(broker.process.pid)
                    probe = RoundTrips(broker.ports["mqtt"])
                    probe.start()
                    t0 = time.perf_counter()
                    for i in range(n):
                        ch.queue_declare(f"q{i}")
                    t_queues = time.perf_counter() - t0
                    rss_queues = _group_rss(broker.process.pid)
                    t0 = time.perf_counter()
                    for i in range(n):
                        ch.queue_bind(f"q{i % 1000}", "amq.topic", f"a.{i}.#")
                    t_topic = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    for i in range(n):
                        ch.queue_bind(f"q{i % 1000}", "amq.direct", f"k{i}")
                    t_direct = time.perf_counter() - t0
                    rss_bound = _group_rss(broker.process.pid)
                    rtt = probe.finish()
                    conn.close()
                    print(f"objects {name:8} n={n:>7}: declare {t_queues / n * 1e6:6.0f} us/queue"
                          f" ({(rss_queues - base) / n:6.0f} B/queue);"
                          f" bind topic {t_topic / n * 1e6:6.0f} us, direct"
                          f" {t_direct / n * 1e6:6.0f} us"
                          f" ({(rss_bound - rss_queues) / (2 * n):5.0f} B/binding); {rtt}",
                          flush=True)
                finally:
                    broker.stop()


def _run_turns(clock) -> list[float]:
    """Run a fake clock's pending calls one at a time, as reactor turns; their CPU times."""
    times = []
    while clock.calls:
        call = clock.calls.pop(0)
        call.called = 1
        t = time.thread_time()
        call.func(*call.args, **call.kw)
        times.append(time.thread_time() - t)
    return times


def bench_import(sizes: list[int]) -> None:
    from warren.broker.definitions import import_definitions_sliced
    for n in sizes:
        broker = _core_broker()
        defs = {"queues": [{"name": f"q{i}", "vhost": "/", "durable": True,
                            "auto_delete": False, "arguments": {}} for i in range(n)],
                "bindings": [{"source": "amq.topic", "vhost": "/", "destination": f"q{i}",
                              "destination_type": "queue", "routing_key": f"a.{i}.#",
                              "arguments": {}} for i in range(n)]}
        t0, c0 = time.perf_counter(), time.thread_time()
        import_definitions_sliced(broker, defs)
        first = time.thread_time() - c0
        times = sorted(_run_turns(broker.clock))
        total = time.perf_counter() - t0
        print(f"import of {n} queues + {n} bindings: first call {first * 1e3:.1f} ms of CPU,"
              f" then {len(times)} turns, median {statistics.median(times) * 1e3:.1f} ms,"
              f" max {times[-1] * 1e3:.1f} ms of CPU; {total:.2f}s in all", flush=True)


def bench_metrics(sizes: list[int]) -> None:
    import requests

    from bench.brokers import Warren, free_port

    class WarrenHttp(Warren):
        http_port = free_port()

        def command(self) -> list[str]:
            argv = super().command()
            argv[argv.index("--http-port") + 1] = str(self.http_port)
            return argv

    from bench.gc_probe import summary as gc_summary, turns_summary
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            gc_log = str(Path(tmp) / "gc.log")
            broker = WarrenHttp(Path(tmp), command=[sys.executable, "-m", "bench.gc_probe",
                                                    gc_log])
            broker.start()
            try:
                base = f"http://127.0.0.1:{broker.http_port}"
                r = requests.post(base + "/api/definitions", auth=("guest", "guest"),
                                  timeout=600, json={"queues": [
                                      {"name": f"q{i}", "vhost": "/", "durable": False,
                                       "auto_delete": False, "arguments": {}}
                                      for i in range(n)]})
                r.raise_for_status()
                for path in ("/metrics", "/metrics/per-object",
                             "/metrics/detailed?family=queue_coarse_metrics&vhost=%2F"):
                    times = []
                    probe = RoundTrips(broker.ports["mqtt"])
                    probe.start()
                    for _ in range(5):
                        t0 = time.perf_counter()
                        r = requests.get(base + path, timeout=300)
                        times.append(time.perf_counter() - t0)
                    rtt = probe.finish()
                    if r.status_code != 200:
                        print(f"metrics n={n} {path}: HTTP {r.status_code}")
                        continue
                    print(f"metrics n={n:>6} queues {path}: median"
                          f" {statistics.median(times) * 1e3:7.1f} ms, {len(r.content):>9} bytes;"
                          f" {rtt}", flush=True)
            finally:
                broker.stop()
            print(f"    broker's {gc_summary(gc_log)}\n    {turns_summary(gc_log + '.turns')}",
                      flush=True)


def _raise_fd_limit(wanted: int) -> None:
    """Open files for ``wanted`` sockets here and in the brokers we start (they inherit it)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        print(f"    (open files limited to {target}: fewer than {wanted} connections may open)",
              flush=True)


async def _big_bindings(port: int, n: int, report, unbind: bool = False) -> None:
    """N topic then N direct bindings over one connection, WINDOW in flight at a time;
    ``unbind``: then each unbound, the same way (queue.unbind's cost beside queue.bind's)."""
    from types import SimpleNamespace

    from pamqp import commands

    from bench.loadgen.amqp import AmqpConnection
    window = 1000
    c = await AmqpConnection.open("127.0.0.1", port)
    await c.start(SimpleNamespace(user="guest", password="guest", vhost="/"))
    for i in range(1000):
        c.send(commands.Queue.Declare(queue=f"b{i}"))
    for _ in range(1000):
        await c.expect(commands.Queue.DeclareOk)
    report("queues", 0.0)
    kinds = (("topic", "amq.topic", lambda i: f"a.{i}.#"),
             ("direct", "amq.direct", lambda i: f"k{i}"))

    async def windowed(kind: str, method: Any, answer: Any, exchange: str, key: Any) -> None:
        """N ``method``s (queue.bind or queue.unbind), ``window`` in flight at a time."""
        t0 = time.perf_counter()
        for start in range(0, n, window):
            end = min(start + window, n)
            for i in range(start, end):
                c.send(method(queue=f"b{i % 1000}", exchange=exchange, routing_key=key(i)))
            for _ in range(start, end):
                await c.expect(answer)
            if end % 100_000 == 0 and end < n:   # a run stopped early still says how far
                print(f"    {kind}: {end} bindings in {time.perf_counter() - t0:.1f} s",
                      flush=True)
        report(kind, time.perf_counter() - t0)

    for kind, exchange, key in kinds:
        await windowed(kind, commands.Queue.Bind, commands.Queue.BindOk, exchange, key)
    if unbind:
        for kind, exchange, key in kinds:
            await windowed("unbind " + kind, commands.Queue.Unbind, commands.Queue.UnbindOk,
                           exchange, key)
    await c.close()


async def _big_connections(port: int, n: int) -> tuple[float, list]:
    """N AMQP connections (handshake and a channel), 50 opening at a time; kept open."""
    from types import SimpleNamespace

    from bench.loadgen.amqp import AmqpConnection
    settings = SimpleNamespace(user="guest", password="guest", vhost="/")
    gate = asyncio.Semaphore(50)

    async def one():
        async with gate:
            c = await AmqpConnection.open("127.0.0.1", port, timeout=120)
            await c.start(settings)
            return c
    t0 = time.perf_counter()
    conns = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return time.perf_counter() - t0, conns


#: big: seconds the other client goes on timing round trips once the bindings are made
IDLE_SECONDS = 20


def bench_big(sizes: list[int], connections: int, brokers: list[str],
              rabbitmq_server: str | None, unbind: bool = False) -> None:
    from bench.brokers import RabbitMQ, Warren
    from bench.gc_probe import summary as gc_summary, turns_summary
    _raise_fd_limit(connections + 1000)
    runs = [(name, n) for n in sizes if n > 0 for name in brokers]   # --sizes 0: none
    if connections:
        runs += [(name, -connections) for name in brokers]
    for name, n in runs:
        with tempfile.TemporaryDirectory() as tmp:
            gc_log = str(Path(tmp) / "gc.log")
            broker = (Warren(Path(tmp), command=[sys.executable, "-m", "bench.gc_probe", gc_log])
                      if name == "warren" else RabbitMQ(Path(tmp), program=rabbitmq_server))
            broker.start()
            try:
                probe = RoundTrips(broker.ports["mqtt"])
                probe.start()
                rss = [_group_rss(broker.process.pid)]
                if n > 0:
                    parts = []

                    cpu = [_group_cpu(broker.process.pid)]

                    def report(what, seconds, parts=parts, rss=rss, cpu=cpu):
                        now = _group_rss(broker.process.pid)
                        cpu.append(_group_cpu(broker.process.pid))
                        if what != "queues":
                            parts.append(f"{what} {seconds / n * 1e6:5.1f} us/op"
                                         f" (broker CPU {(cpu[-1] - cpu[-2]) / n * 1e6:5.1f}"
                                         f" us), {(now - rss[-1]) / n:5.0f} B/binding")
                            print(f"    {parts[-1]}", flush=True)   # kept if stopped later
                        rss.append(now)
                    asyncio.run(_big_bindings(broker.ports["amqp"], n, report, unbind))
                    line = f"big {name:8} n={n:>8} bindings: " + "; ".join(parts)
                    line += f"; while binding: {probe.finish()}"
                    probe = RoundTrips(broker.ports["mqtt"])   # the broker idle with them
                    probe.start()
                    time.sleep(IDLE_SECONDS)
                    line += f"; then idle {IDLE_SECONDS} s: {probe.finish()}"
                else:
                    held: list = []

                    async def run(held=held, probe=probe):
                        seconds, conns = await _big_connections(broker.ports["amqp"], -n)
                        ok = [c for c in conns if not isinstance(c, BaseException)]
                        now = _group_rss(broker.process.pid)
                        errors = {str(c) for c in conns if isinstance(c, BaseException)}
                        held.append((seconds, len(ok), now, sorted(errors)[:2]))
                        await asyncio.sleep(2)        # held open: the probe keeps timing
                        held.append(probe.finish())
                        closing = RoundTrips(broker.ports["mqtt"])
                        closing.start()
                        for c in ok:                  # all at once, as a network failure
                            c.close_transport()
                        await asyncio.sleep(5)
                        held.append(closing.finish())
                    asyncio.run(run())
                    (seconds, ok, now, errors), opening, closing = held
                    line = (f"big {name:8} c={-n:>8} connections: {ok} open,"
                            f" {seconds / max(ok, 1) * 1e6:5.0f} us/connection,"
                            f" {(now - rss[0]) / max(ok, 1):7.0f} B/connection"
                            + (f" (failures: {errors})" if errors else "")
                            + f"; opening and held: {opening}; all closed at once: {closing}")
                if n > 0:
                    line += f"; rss {_group_rss(broker.process.pid) / 2**20:.0f} MiB"
                print(line, flush=True)
            finally:
                broker.stop()
            if name == "warren":
                print(f"    broker's {gc_summary(gc_log)}\n    {turns_summary(gc_log + '.turns')}",
                      flush=True)


async def _churn(protocol: str, port: int, n: int) -> None:
    """N connections of ``protocol``, one after another: an exclusive queue consumed (a
    subscription), then the even ones closed by the protocol, the odd ones dropped."""
    from types import SimpleNamespace

    from pamqp import commands

    from bench.loadgen.amqp import AmqpConnection
    from bench.loadgen.stomp import StompConnection, encode
    settings = SimpleNamespace(user="guest", password="guest", vhost="/")
    for i in range(n):
        if protocol == "amqp":
            a = await AmqpConnection.open("127.0.0.1", port)
            await a.start(settings)
            await a.call(commands.Queue.Declare(queue=f"churn.{i}", exclusive=True),
                         commands.Queue.DeclareOk)
            await a.call(commands.Basic.Consume(queue=f"churn.{i}"), commands.Basic.ConsumeOk)
            if i % 2 == 0:
                await a.close()
            a.close_transport()          # (dropped, for the odd ones)
        else:
            s = await StompConnection.open("127.0.0.1", port)
            await s.start(settings)
            s.write(encode("SUBSCRIBE", {"id": "1", "destination": f"/topic/churn.{i}",
                                         "receipt": "r"}))
            await s.expect("RECEIPT")
            if i % 2 == 0:
                await s.close()
            s.close_transport()          # (dropped, for the odd ones)


def bench_churn(sizes: list[int]) -> None:
    from bench.brokers import Warren
    from bench.gc_probe import freed_by_generation, summary as gc_summary
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            gc_log = str(Path(tmp) / "gc.log")
            broker = Warren(Path(tmp), command=[sys.executable, "-m", "bench.gc_probe", gc_log])
            broker.start()
            try:
                t0 = time.perf_counter()
                asyncio.run(_churn("amqp", broker.ports["amqp"], n))
                asyncio.run(_churn("stomp", broker.ports["stomp"], n))
                seconds = time.perf_counter() - t0
            finally:
                broker.stop()
            freed = freed_by_generation(gc_log)
            total = sum(freed.values())
            print(f"churn n={n} AMQP + {n} STOMP connections in {seconds:.1f} s: collections"
                  f" freed {total} objects ({total / (2 * n):.1f} per connection; by generation"
                  f" {dict(sorted(freed.items()))})\n    broker's {gc_summary(gc_log)}",
                  flush=True)


def bench_deliver(sizes: list[int], messages: int = 2000) -> None:
    import paho.mqtt.client as mqtt

    from bench.brokers import Warren
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            broker = Warren(Path(tmp), command=[sys.executable, "-m", "warren"])
            broker.start()
            try:
                port = broker.ports["mqtt"]
                sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="many-filters")
                subscribed = threading.Event()
                got = threading.Event()
                count = {"n": 0}

                def on_message(*_a, count=count, got=got):
                    count["n"] += 1
                    if count["n"] == messages:
                        got.set()
                sub.on_subscribe = lambda *a: subscribed.set()
                sub.on_message = on_message
                sub.connect("127.0.0.1", port)
                sub.loop_start()
                sub.subscribe([(f"bench/{i}/+/temp", 0) for i in range(n)])
                subscribed.wait(600)
                pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
                pub.connect("127.0.0.1", port)
                pub.loop_start()
                t0 = time.perf_counter()
                for j in range(messages):
                    pub.publish(f"bench/{j * 7919 % n}/dev{j}/temp", b"x", qos=0)
                ok = got.wait(600)
                dt = time.perf_counter() - t0
                print(f"deliver: client with {n:>6} filters, {messages} messages on distinct"
                      f" topics: {'all in' if ok else 'TIMEOUT after'} {dt:.2f}s"
                      f" ({dt / messages * 1e6:.0f} us/message)", flush=True)
                for c in (sub, pub):
                    c.loop_stop()
                    c.disconnect()
            finally:
                broker.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["core", "mqtt", "purge", "purge-paged", "metrics", "import",
                                    "deliver", "topic", "objects", "retained", "retained-subscribe",
                                    "big", "churn"])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument("--mode", choices=["one", "many", "both", "unsub", "persist", "burst",
                                      "drop", "resume", "close"],
                   default="both",
                   help="mqtt: one SUBSCRIBE with every filter, one per filter, or both; one "
                   "UNSUBSCRIBE of N filters (unsub); one SUBSCRIBE of a persistent session "
                   "(persist) or its CONNECT again (resume); the DISCONNECT of a clean session "
                   "of N filters (close); N QoS 1 PUBLISHes in one write "
                   "(burst); N connections with a subscription each, closed at once (drop)")
    p.add_argument("--retained", type=int, default=0,
                   help="mqtt: retained messages matching the filters, made before")
    p.add_argument("--brokers", nargs="+", default=["warren", "rabbitmq"],
                   choices=["warren", "rabbitmq"], help="objects: the brokers compared")
    p.add_argument("--unbind", action="store_true",
                   help="big: unbind the N bindings of each kind after making them")
    p.add_argument("--connections", type=int, default=10_000,
                   help="big: concurrent connections (0: none)")
    p.add_argument("--rabbitmq-server", help="objects: rabbitmq-server (default: on PATH)")
    a = p.parse_args(argv)
    if a.what == "core":
        bench_core(a.sizes)
    elif a.what == "purge":
        bench_purge(a.sizes)
    elif a.what == "purge-paged":
        bench_purge_paged(a.sizes)
    elif a.what == "metrics":
        bench_metrics(a.sizes)
    elif a.what == "import":
        bench_import(a.sizes)
    elif a.what == "deliver":
        bench_deliver(a.sizes)
    elif a.what == "topic":
        bench_topic(a.sizes)
    elif a.what == "churn":
        bench_churn(a.sizes)
    elif a.what == "big":
        bench_big(a.sizes, a.connections, a.brokers, a.rabbitmq_server, a.unbind)
    elif a.what == "retained":
        bench_retained(a.sizes)
    elif a.what == "retained-subscribe":
        bench_retained_subscribe(a.sizes)
    elif a.what == "objects":
        bench_objects(a.sizes, a.brokers, a.rabbitmq_server)
    else:
        bench_mqtt(a.sizes, ["one", "many"] if a.mode == "both" else [a.mode], a.retained)
    return 0


if __name__ == "__main__":
    sys.exit(main())
