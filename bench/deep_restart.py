"""Restart time and memory of warren holding one deep queue, at depths publishing would take
too long to reach (issue 22): the journal is written directly.

    python -m bench.deep_restart --messages 1000000 5000000

For each depth: a broker declares a durable queue and stops; N persistent 100-byte messages
are appended to its journal with the store's own API (what N confirmed publishes leave, in
a fraction of the time); the broker is started on it and timed until the AMQP port accepts
(``port s``) and until a passive queue.declare reports all N (``ready s``); its resident
memory then (VmRSS) and its peak (VmHWM). That start replays the journal; the broker is then
stopped cleanly (which saves the journal's index) and started again, timed the same way (the
start that loads the saved index). Nothing is asserted; figures for the report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pika

from warren.amqp.properties import CODEC
from warren.embedded.process import BrokerProcess
from warren.model.message import Properties, record_head
from warren.store.interface import resource_key
from warren.store.journal.store import JournalStore

QUEUE = "bench.deep"


def write_messages(journal: Path, count: int) -> None:
    """Append ``count`` messages for the queue to the journal of a stopped broker."""
    store = JournalStore(journal)
    store.open()
    state = store.recover()
    first = state.max_msg_id + 1
    record = record_head("", QUEUE, CODEC.encode(Properties(delivery_mode=2))) + b"r" * 100
    key = [resource_key("/", QUEUE)]
    for msg_id in range(first, first + count):
        store.publish(msg_id, record, key)
        if msg_id % 100_000 == 0:
            store.flush()
    store.close()


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


def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-deep-restart-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data", extra_args=["--stream-port", "0"])
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare(QUEUE, durable=True)
        conn.close()
        broker.stop()
        began = time.monotonic()
        write_messages(Path(tmp) / "data" / "journal", count)
        written = time.monotonic() - began
        began = time.monotonic()
        broker.start(timeout=1800)
        port_s = time.monotonic() - began
        got = depth(broker.amqp_url)
        ready_s = time.monotonic() - began
        assert broker.proc is not None
        rss = status_kb(broker.proc.pid, "VmRSS") / 1024
        peak = status_kb(broker.proc.pid, "VmHWM") / 1024
        # a clean stop saves the journal's index; the next start loads it instead of replaying
        began = time.monotonic()
        broker.stop(timeout=600)
        stop_s = time.monotonic() - began
        began = time.monotonic()
        broker.start(timeout=1800)
        saved_port_s = time.monotonic() - began
        saved_got = depth(broker.amqp_url)
        saved_ready_s = time.monotonic() - began
        used = any("from the saved index" in line for line in broker.lines)
        saved_rss = status_kb(broker.proc.pid, "VmRSS") / 1024
        saved_peak = status_kb(broker.proc.pid, "VmHWM") / 1024
        broker.kill()
        return {"messages": count, "recovered": got, "write_s": written, "port_s": port_s,
                "ready_s": ready_s, "rss_mb": rss, "peak_mb": peak, "stop_s": stop_s,
                "saved_port_s": saved_port_s, "saved_ready_s": saved_ready_s,
                "saved_recovered": saved_got if used else -1, "saved_rss_mb": saved_rss,
                "saved_peak_mb": saved_peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deep_restart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, nargs="+", default=[1_000_000])
    a = p.parse_args(argv)
    print("| messages | replay: restart → port s | replay: restart → all messages s "
          "| RSS MB | peak RSS MB | clean stop s | saved index: restart → port s "
          "| saved index: restart → all messages s | RSS MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for count in a.messages:
        r = measure(count)
        print(f"| {count:,} | {r['port_s']:.1f} | {r['ready_s']:.1f} | {r['rss_mb']:.0f} "
              f"| {r['peak_mb']:.0f} | {r['stop_s']:.1f} | {r['saved_port_s']:.1f} "
              f"| {r['saved_ready_s']:.1f} | {r['saved_rss_mb']:.0f} "
              f"| {r['saved_peak_mb']:.0f} |  (recovered {r['recovered']:,}, from the saved "
              f"index {r['saved_recovered']:,}; journal written in {r['write_s']:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
