"""A stream's log on disk: restarts, kill -9 mid-publish, torn tails, and retention.

Each test has its own broker (journal store; a stream's log is its own files whatever the
store) and reads the stream back from ``first`` with pika.
"""

from __future__ import annotations

import glob
import os
import threading

import pika
import pytest
import requests

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher
from tests.polling import eventually

STREAM = {"x-queue-type": "stream"}


@pytest.fixture
def broker(tmp_path):
    proc = BrokerProcess(tmp_path / "data").start()
    yield proc
    proc.stop()
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


def declare(broker, name, **arguments):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ok = conn.channel().queue_declare(name, durable=True, arguments={**STREAM, **arguments})
    conn.close()
    return ok.method.message_count


def publish_confirmed(broker, name, bodies):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish("", name, body)
    conn.close()


def read_all(broker, name, offset="first"):
    """Every (body, offset) from ``offset`` up to the stream's message count."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    info = stream_info(broker, name)
    first = info["first_offset"] if offset == "first" else offset
    want = info["last_offset"] + 1 - first
    got = []
    if want > 0:
        ch.basic_qos(prefetch_count=200)
        for method, props, body in ch.consume(name, arguments={"x-stream-offset": offset},
                                              inactivity_timeout=30):
            assert method is not None, f"only {len(got)} of {want}"
            got.append((body, props.headers["x-stream-offset"]))
            ch.basic_ack(method.delivery_tag)
            if len(got) == want:
                break
    conn.close()
    return got


def stream_info(broker, name):
    r = requests.get(f"{broker.http_url}/api/queues/%2F/{name}", auth=("guest", "guest"),
                     timeout=30)
    r.raise_for_status()
    return r.json()["stream"]


def segment_files(broker):
    return sorted(glob.glob(os.path.join(broker.data_dir, "streams", "*", "*.log")))


def test_restart_keeps_messages_and_offsets(broker):
    declare(broker, "s")
    publish_confirmed(broker, "s", [b"m%d" % i for i in range(100)])
    broker.stop()
    broker.start()
    assert declare(broker, "s") == 100
    assert read_all(broker, "s") == [(b"m%d" % i, i) for i in range(100)]
    publish_confirmed(broker, "s", [b"after"])
    assert read_all(broker, "s", 100) == [(b"after", 100)]


def test_confirmed_messages_survive_kill_9_mid_publish(broker):
    declare(broker, "k")
    kill_now = threading.Event()

    def killer():
        kill_now.wait(60)
        broker.kill()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    publisher = ConfirmedPublisher(broker.amqp_url, "k",
                                   (b"k%d" % i for i in range(10 ** 6)), window=300)
    publisher.on_confirm = lambda p: len(p.acked) >= 700 and kill_now.set()
    publisher.run(timeout=60)
    kill_now.set()
    thread.join(30)
    assert len(publisher.acked) >= 700, publisher.error
    assert not publisher.nacked
    broker.start()
    got = read_all(broker, "k")
    bodies = [b for b, _ in got]
    assert [o for _, o in got] == list(range(len(got)))          # contiguous from 0
    assert len(set(bodies)) == len(bodies)                        # nothing twice
    assert set(publisher.acked) <= set(bodies)                    # every confirmed one
    assert set(bodies) <= publisher.published                     # nothing invented
    assert "Traceback" not in broker.log()


def test_torn_tail_is_cut_on_recovery(broker):
    declare(broker, "t")
    publish_confirmed(broker, "t", [b"t%d" % i for i in range(10)])
    broker.stop()
    last = segment_files(broker)[-1]
    with open(last, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02\x03")   # half a record header and a few bytes
    broker.start()
    assert read_all(broker, "t") == [(b"t%d" % i, i) for i in range(10)]
    publish_confirmed(broker, "t", [b"next"])
    assert read_all(broker, "t", 10) == [(b"next", 10)]
    assert "torn record header" in broker.log() or "runs past the end" in broker.log()
    assert "Traceback" not in broker.log()


def test_retention_by_bytes_deletes_whole_segments(broker):
    declare(broker, "r", **{"x-stream-max-segment-size-bytes": 1000,
                            "x-max-length-bytes": 3000})
    publish_confirmed(broker, "r", [b"%03d" % i + b"." * 96 for i in range(100)])
    info = stream_info(broker, "r")
    assert info["last_offset"] == 99
    assert info["first_offset"] > 0
    assert info["size_bytes"] <= 3000 + 1000   # over by at most the segment being written
    assert info["segments"] == len(segment_files(broker)) <= 5
    got = read_all(broker, "r")
    first = info["first_offset"]
    assert [o for _, o in got] == list(range(first, 100))
    assert got[0][0].startswith(b"%03d" % first)
    broker.stop()
    broker.start()
    assert stream_info(broker, "r")["first_offset"] == first
    publish_confirmed(broker, "r", [b"later"])
    assert stream_info(broker, "r")["last_offset"] == 100


def test_offset_before_the_first_reads_from_the_first(broker):
    declare(broker, "b", **{"x-stream-max-segment-size-bytes": 500, "x-max-length-bytes": 1000})
    publish_confirmed(broker, "b", [b"." * 100 for _ in range(40)])
    first = stream_info(broker, "b")["first_offset"]
    assert first > 0
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5)
    method, props, _ = next(ch.consume("b", arguments={"x-stream-offset": 0},
                                       inactivity_timeout=30))
    assert props.headers["x-stream-offset"] == first
    conn.close()


def test_policy_sets_retention(broker):
    declare(broker, "p.s")
    r = requests.put(f"{broker.http_url}/api/policies/%2F/streams", auth=("guest", "guest"),
                     json={"pattern": "^p\\.", "apply-to": "streams",
                           "definition": {"max-length-bytes": 2000,
                                          "stream-max-segment-size-bytes": 800}}, timeout=30)
    assert r.status_code in (201, 204), r.text
    eventually(lambda: requests.get(f"{broker.http_url}/api/queues/%2F/p.s",
                                    auth=("guest", "guest"), timeout=30).json().get("policy"),
               "the policy applied")
    publish_confirmed(broker, "p.s", [b"." * 100 for _ in range(60)])
    info = stream_info(broker, "p.s")
    assert info["first_offset"] > 0
    assert info["segments"] <= 4


def test_retention_by_age(broker):
    declare(broker, "a", **{"x-max-age": "1s", "x-stream-max-segment-size-bytes": 300})
    publish_confirmed(broker, "a", [b"." * 100 for _ in range(10)])

    def aged_out():
        # segments roll as messages come, and a roll applies retention: keep publishing
        publish_confirmed(broker, "a", [b"." * 100])
        return stream_info(broker, "a")["first_offset"] >= 10

    eventually(aged_out, "the first ten messages aged out", every=0.5)


def test_reader_whose_segment_is_retained_away_moves_on_to_the_first(broker):
    declare(broker, "m", **{"x-stream-max-segment-size-bytes": 600, "x-max-length-bytes": 1200})
    publish_confirmed(broker, "m", [b"a%02d" % i + b"." * 60 for i in range(5)])
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    gen = ch.consume("m", arguments={"x-stream-offset": "first"}, inactivity_timeout=30)
    method, props, body = next(gen)
    assert props.headers["x-stream-offset"] == 0
    # meanwhile the reader's segment falls out of retention
    publish_confirmed(broker, "m", [b"b%02d" % i + b"." * 60 for i in range(60)])
    first = stream_info(broker, "m")["first_offset"]
    assert first > 1
    ch.basic_ack(method.delivery_tag)
    method, props, body = next(gen)
    assert props.headers["x-stream-offset"] == first   # on at the oldest offset still kept
    conn.close()
    assert "Traceback" not in broker.log()
