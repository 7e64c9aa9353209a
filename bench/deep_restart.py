"""Restart time and memory of warren holding one deep queue, at depths publishing would take
too long to reach (issue 22): the journal is written directly.

    python -m bench.deep_restart --messages 1000000 5000000

For each depth: a broker declares a durable queue and stops; N persistent 100-byte messages
are appended to its journal with the store's own API (what N confirmed publishes leave, in
a fraction of the time); the broker is started on it and timed until the AMQP port accepts
(``port s``) and until a passive queue.declare reports all N (``ready s``); its resident
memory then (VmRSS) and its peak (VmHWM). That start replays the whole journal: what a start
after kill -9 cost before checkpoints, and still costs without one.

Then, on that broker (``--journal-checkpoint-bytes`` of 1 MiB): the checkpoint it takes after
the replay (its time, and its time on the reactor thread, from its log line); a second
checkpoint, made due by publishing 10,000 more confirmed messages, while an MQTT client in
another process times QoS 1 round trips (``bench.scale.RoundTrips``: the longest is the
stall other clients see); kill -9 and a start from the checkpoint, timed as above; a clean
stop (timed: it saves the index) and the start from the saved index. Nothing is asserted;
figures for the report.

With ``--tail T`` instead (``python -m bench.deep_restart --messages 10000000 --tail 0
300000 700000``): what a start after kill -9 costs when the journal holds T records written
after the last checkpoint (what a fill that outran its checkpoints leaves): N messages are
written with the store's API and its index saved (a start takes it as the checkpoint), then
T more appended after it, and the store dropped without closing (kill -9). The broker is
started on that, timed to the AMQP port and to a consumer's first delivery; its log lines
split the start (launch -> journal recovered -> broker recovered -> listening), and VmHWM
is the peak resident memory of the start. ``--cwd`` runs the broker from another checkout
(a before/after table in one sitting: the journal's format is the same).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import pika

from bench.scale import RoundTrips
from warren.amqp.properties import CODEC
from warren.embedded.process import READY_MARK, BrokerProcess
from warren.model.message import Message, Properties, record_head
from warren.store.interface import MessageStore, resource_key
from warren.store.journal.store import JournalStore

QUEUE = "bench.deep"


def write_messages(journal: Path, count: int) -> None:
    """Append ``count`` messages for the queue to the journal of a stopped broker."""
    fill(JournalStore(journal), count, flush_every=100_000)


def fill(store: MessageStore, count: int, flush_every: int, queue: str = QUEUE) -> None:
    """Store ``count`` persistent 100-byte messages for ``queue`` through a stopped broker's
    store (far faster than publishing them), flushing every ``flush_every``."""
    store.open()
    state = store.recover()
    first = state.max_msg_id + 1
    record = record_head("", queue, CODEC.encode(Properties(delivery_mode=2))) + b"r" * 100
    key = [resource_key("/", queue)]
    for msg_id in range(first, first + count):
        store.publish(msg_id, record, key)
        if msg_id % flush_every == 0:
            store.flush()
    store.close()


def write_checkpointed(journal: Path, count: int, tail: int) -> int:
    """``count`` messages whose index is saved (the next start promotes it to the
    checkpoint), then ``tail`` more after it, left as kill -9 leaves them; returns the
    records a start from the checkpoint replays (the tail and the head segments' openings)."""
    store = JournalStore(journal, checkpoint_bytes=0)
    fill_measured(store, 1, count)
    store.close()   # saves the index
    store = JournalStore(journal, checkpoint_bytes=0)
    fill_measured(store, count + 1, tail)
    store.flush()
    store.abandon()   # no close: what kill -9 leaves
    return tail


def fill_measured(store: JournalStore, first: int, count: int, queue: str = QUEUE) -> None:
    """As :func:`fill` (ids from ``first``), recovered as the broker recovers (lazily, with
    body sizes), so a close saves the index."""
    store.open()
    store.recover(body_size=Message.record_body_size)
    record = record_head("", queue, CODEC.encode(Properties(delivery_mode=2))) + b"r" * 100
    key = [resource_key("/", queue)]
    for msg_id in range(first, first + count):
        store.publish(msg_id, record, key)
        if msg_id % 100_000 == 0:
            store.flush()


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def line_time(broker: BrokerProcess, text: str) -> float | None:
    """The wall time (epoch seconds) of the broker's first log line containing ``text``."""
    for line in list(broker.lines):
        if text in line:
            match = _STAMP.match(line)
            if match:
                stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
                return stamp + int(match.group(2)) / 1000
    return None


def first_delivery(url: str) -> int:
    """Consume (prefetch 1000) until the first delivery; it goes back unacked. Its body size."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=1000)
        for _method, _props, body in channel.consume(QUEUE, inactivity_timeout=600):
            return len(body) if body is not None else -1
        return -1
    finally:
        conn.close()


def measure_tail(count: int, tail: int, cwd: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-deep-tail-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", extra_args=["--stream-port", "0"], cwd=cwd)
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare(QUEUE, durable=True)
        conn.close()
        broker.stop()
        write_checkpointed(Path(tmp) / "data" / "journal", count, tail)
        launched = time.time()
        began = time.monotonic()
        broker.start(timeout=1800)
        port_s = time.monotonic() - began
        size = first_delivery(broker.amqp_url)
        first_s = time.monotonic() - began
        assert broker.proc is not None
        peak = status_kb(broker.proc.pid, "VmHWM") / 1024
        got = depth(broker.amqp_url)
        marks = [line_time(broker, text) for text in (
            "definitions from the checkpoint", " vhosts, ", READY_MARK)]
        replayed = next((int(m.group(1)) for m in map(_REPLAYED.search, broker.lines) if m), -1)
        broker.kill()
        journal_s, broker_s, listening_s = (
            -1.0 if mark is None else mark - launched for mark in marks)
        return {"messages": count, "tail": tail, "replayed": replayed, "port_s": port_s,
                "first_s": first_s, "journal_s": journal_s, "broker_s": broker_s,
                "listening_s": listening_s, "peak_mb": peak, "depth": got, "body": size}


_REPLAYED = re.compile(r"from the checkpoint at segment \d+ offset \d+ and (\d+) records")


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def depth(url: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return conn.channel().queue_declare(QUEUE, passive=True).method.message_count
    finally:
        conn.close()


CHECKPOINT_BYTES = 1024 * 1024
#: Published to make the second checkpoint due (about 1.5 MB of journal).
MORE = 10_000
_CHECKPOINT = re.compile(r"checkpoint at segment \d+ offset \d+ written \(\d+ messages, \d+ "
                         r"bytes, ([\d.]+) s, ([\d.]+) s of it on the reactor(?:, delta \d+)?\)")


def checkpoints(broker: BrokerProcess, count: int, timeout: float = 600) -> tuple[float, float]:
    """Wait for the ``count``-th checkpoint line of this process: (its time, reactor's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in map(_CHECKPOINT.search, list(broker.lines)) if m]
        if len(found) >= count:
            return float(found[count - 1].group(1)), float(found[count - 1].group(2))
        time.sleep(0.1)
    raise RuntimeError("no checkpoint:\n" + broker.log())


def publish_more(url: str, count: int) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2)
        for _ in range(count):
            channel.basic_publish("", QUEUE, b"r" * 100, props)
    finally:
        conn.close()


def timed_start(broker: BrokerProcess) -> tuple[float, float, int]:
    """Start; (seconds to the AMQP port, seconds to the queue's depth, the depth)."""
    began = time.monotonic()
    broker.start(timeout=1800)
    port_s = time.monotonic() - began
    got = depth(broker.amqp_url)
    return port_s, time.monotonic() - began, got


def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-deep-restart-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", extra_args=[
            "--stream-port", "0", "--journal-checkpoint-bytes", str(CHECKPOINT_BYTES)])
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare(QUEUE, durable=True)
        conn.close()
        broker.stop()
        began = time.monotonic()
        write_messages(Path(tmp) / "data" / "journal", count)
        written = time.monotonic() - began
        port_s, ready_s, got = timed_start(broker)
        assert broker.proc is not None
        rss = status_kb(broker.proc.pid, "VmRSS") / 1024
        peak = status_kb(broker.proc.pid, "VmHWM") / 1024
        first_s, first_reactor_s = checkpoints(broker, 1)
        probe = RoundTrips(broker.mqtt_port)
        probe.start()
        publish_more(broker.amqp_url, MORE)
        second_s, second_reactor_s = checkpoints(broker, 2)
        round_trips = probe.finish()
        broker.kill()
        ckpt_port_s, ckpt_ready_s, ckpt_got = timed_start(broker)
        used = any("from the checkpoint" in line for line in broker.lines)
        ckpt_rss = status_kb(broker.proc.pid, "VmRSS") / 1024
        ckpt_peak = status_kb(broker.proc.pid, "VmHWM") / 1024
        # a clean stop saves the journal's index; the next start loads it instead of replaying
        began = time.monotonic()
        broker.stop(timeout=600)
        stop_s = time.monotonic() - began
        saved_port_s, saved_ready_s, saved_got = timed_start(broker)
        saved_used = any("from the saved index" in line for line in broker.lines)
        saved_rss = status_kb(broker.proc.pid, "VmRSS") / 1024
        saved_peak = status_kb(broker.proc.pid, "VmHWM") / 1024
        broker.kill()
        return {"messages": count, "recovered": got, "write_s": written, "port_s": port_s,
                "ready_s": ready_s, "rss_mb": rss, "peak_mb": peak,
                "first_s": first_s, "first_reactor_s": first_reactor_s,
                "second_s": second_s, "second_reactor_s": second_reactor_s,
                "round_trips": round_trips,
                "ckpt_port_s": ckpt_port_s, "ckpt_ready_s": ckpt_ready_s,
                "ckpt_recovered": ckpt_got if used else -1, "ckpt_rss_mb": ckpt_rss,
                "ckpt_peak_mb": ckpt_peak, "stop_s": stop_s,
                "saved_port_s": saved_port_s, "saved_ready_s": saved_ready_s,
                "saved_recovered": saved_got if saved_used else -1, "saved_rss_mb": saved_rss,
                "saved_peak_mb": saved_peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deep_restart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--tail", type=int, nargs="+", default=None,
                   help="records after the checkpoint (see above); with --messages")
    p.add_argument("--cwd", default=None, help="run the broker from this checkout")
    a = p.parse_args(argv)
    if a.tail is not None:
        print("| messages | tail after the checkpoint (replayed) | kill -9 → port s "
              "| → first delivery s | launch → journal recovered / broker recovered / "
              "listening s (log) | peak RSS MB | depth after |")
        print("|---|---|---|---|---|---|---|")
        for count in a.messages:
            for tail in a.tail:
                r = measure_tail(count, tail, a.cwd)
                print(f"| {count:,} | {tail:,} ({r['replayed']:,}) | {r['port_s']:.2f} "
                      f"| {r['first_s']:.2f} | {r['journal_s']:.2f} / {r['broker_s']:.2f} / "
                      f"{r['listening_s']:.2f} | {r['peak_mb']:.0f} | {r['depth']:,} |",
                      flush=True)
        return 0
    print("| messages | replay: start → port s | → all messages s | RSS MB | peak MB "
          "| checkpoint s (on the reactor s) | kill -9 → port s | → all messages s | RSS MB "
          "| peak MB | clean stop s | saved index: start → port s | → all messages s "
          "| RSS MB | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for count in a.messages:
        r = measure(count)
        print(f"| {count:,} | {r['port_s']:.1f} | {r['ready_s']:.1f} | {r['rss_mb']:.0f} "
              f"| {r['peak_mb']:.0f} | {r['first_s']:.2f} ({r['first_reactor_s']:.3f}) "
              f"| {r['ckpt_port_s']:.1f} | {r['ckpt_ready_s']:.1f} | {r['ckpt_rss_mb']:.0f} "
              f"| {r['ckpt_peak_mb']:.0f} | {r['stop_s']:.1f} | {r['saved_port_s']:.1f} "
              f"| {r['saved_ready_s']:.1f} | {r['saved_rss_mb']:.0f} "
              f"| {r['saved_peak_mb']:.0f} |", flush=True)
        print(f"  recovered {r['recovered']:,} by the replay, {r['ckpt_recovered']:,} from the "
              f"checkpoint, {r['saved_recovered']:,} from the saved index (-1: not used); "
              f"journal written in {r['write_s']:.0f} s; the checkpoint while publishing: "
              f"{r['second_s']:.2f} s ({r['second_reactor_s']:.3f} s on the reactor), "
              f"{r['round_trips']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
