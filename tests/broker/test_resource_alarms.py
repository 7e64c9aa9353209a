"""The free-disk alarm and the memory watermark as RabbitMQ has them.

A broker started with a free-disk limit larger than any disk raises the disk alarm: AMQP
publishers get connection.blocked "low on disk", STOMP and MQTT publishers are no longer read
(their connections show state "blocked"), and /api/nodes, the health checks and /metrics say
so. ``warren ctl set_disk_free_limit`` lowers it at run time and everything flows again. The
memory watermark defaults to 0.4 of the machine's RAM and can be set at run time too.
"""

from __future__ import annotations

import os

import pika
import pytest
import requests
import stomp

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import Client
from tests.polling import eventually
from tests.webconsole.test_ctl import ctl

HUGE = 10 ** 18     # more bytes free than any disk has


def _node(b) -> dict:
    r = requests.get(f"{b.http_url}/api/nodes", auth=("guest", "guest"), timeout=30)
    return r.json()[0]


def _metrics(b) -> str:
    return requests.get(f"{b.http_url}/metrics", timeout=30).text


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _states(b, protocol_prefix: str) -> list[str]:
    conns = requests.get(f"{b.http_url}/api/connections", auth=("guest", "guest"),
                         timeout=30).json()
    return [c["state"] for c in conns if c["protocol"].startswith(protocol_prefix)]


@pytest.fixture
def low_on_disk(tmp_path):
    with BrokerProcess(tmp_path, extra_args=["--disk-free-limit", str(HUGE)]) as b:
        yield b


def test_disk_alarm_blocks_every_protocol_until_the_limit_is_lowered(low_on_disk):
    b = low_on_disk
    b.wait_for_line("below the limit of")
    node = _node(b)
    assert node["disk_free_alarm"] is True and node["disk_free_limit"] == HUGE
    assert 0 < node["disk_free"] < HUGE
    r = requests.get(f"{b.http_url}/api/health/checks/alarms", auth=("guest", "guest"),
                     timeout=30)
    assert r.status_code == 503 and {"resource": "disk", "node": node["name"]} in \
        r.json()["alarms"]
    text = _metrics(b)
    assert _gauge(text, "rabbitmq_alarms_free_disk_space_watermark") == 1
    assert _gauge(text, "rabbitmq_disk_space_available_bytes") == pytest.approx(
        node["disk_free"], rel=0.5)
    assert _gauge(text, "rabbitmq_disk_space_available_limit_bytes") == HUGE

    # an AMQP publisher is told, with RabbitMQ's reason
    events: list[str] = []
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    conn.add_on_connection_blocked_callback(
        lambda _c, m: events.append("blocked:" + m.method.reason))
    conn.add_on_connection_unblocked_callback(lambda _c, _m: events.append("unblocked"))
    ch = conn.channel()
    ch.queue_declare("t.disk", durable=True)
    ch.basic_publish("", "t.disk", b"first")

    def amqp_saw(event: str) -> bool:
        conn.process_data_events(time_limit=0.05)
        return event in events
    eventually(lambda: amqp_saw("blocked:low on disk"), "connection.blocked")

    # STOMP and MQTT publishers are paused: their connections show as blocked
    st = stomp.Connection([("127.0.0.1", b.stomp_port)])
    st.connect("guest", "guest", wait=True)
    st.send("/queue/t.disk", "from stomp")
    mq = Client(b.mqtt_port)
    mq.publish("t/disk", "from mqtt", qos=0)
    eventually(lambda: _states(b, "STOMP") == ["blocked"], "the STOMP publisher blocked")
    eventually(lambda: _states(b, "MQTT") == ["blocked"], "the MQTT publisher blocked")

    # rabbitmqctl set_disk_free_limit at run time: the alarm clears at once
    out = ctl(b, "set_disk_free_limit", "1MB").stdout
    assert "Setting disk free limit" in out
    eventually(lambda: amqp_saw("unblocked"), "connection.unblocked")
    node = _node(b)
    assert node["disk_free_alarm"] is False and node["disk_free_limit"] == 1_000_000
    assert _gauge(_metrics(b), "rabbitmq_alarms_free_disk_space_watermark") == 0
    eventually(lambda: "blocked" not in _states(b, "STOMP") + _states(b, "MQTT"),
               "STOMP and MQTT publishers read again")
    r = requests.get(f"{b.http_url}/api/health/checks/alarms", auth=("guest", "guest"),
                     timeout=30)
    assert r.status_code == 200
    # what the STOMP client sent while blocked arrives once it is read again
    eventually(lambda: ch.queue_declare("t.disk", durable=True, passive=True)
               .method.message_count >= 2, "the STOMP message in the queue")
    st.disconnect()
    mq.disconnect()
    # raised again, by the relative form
    ctl(b, "set_disk_free_limit", "mem_relative", "1000000")
    eventually(lambda: events.count("blocked:low on disk") == 2 or amqp_saw("-"),
               "connection.blocked again")
    # (a blocked connection is not read, so it is unblocked before pika closes it)
    ctl(b, "set_disk_free_limit", "0")
    eventually(lambda: events.count("unblocked") == 2 or amqp_saw("-"), "unblocked again")
    conn.close()
    assert not any("Traceback" in line for line in b.lines)


def test_bad_limits_are_refused(low_on_disk):
    b = low_on_disk
    for args in (["set_disk_free_limit", "lots"], ["set_disk_free_limit", "5XB"],
                 ["set_disk_free_limit"], ["set_vm_memory_high_watermark", "much"]):
        bad = ctl(b, *args, check=False)
        assert bad.returncode != 0 and bad.stderr, args
    api = f"{b.http_url}/api/nodes/{_node(b)['name'].replace('@', '%40')}"
    for body in ({}, {"limit": -1}, {"limit": "1"}, {"limit": 1, "mem_relative": 1}):
        r = requests.put(api + "/disk-free-limit", json=body, auth=("guest", "guest"),
                         timeout=30)
        assert r.status_code == 400, body
    r = requests.put(api + "/memory-high-watermark", json={"relative": 0},
                     auth=("guest", "guest"), timeout=30)
    assert r.status_code == 400
    r = requests.put(f"{b.http_url}/api/nodes/nobody%40nowhere/disk-free-limit",
                     json={"limit": 1}, auth=("guest", "guest"), timeout=30)
    assert r.status_code == 404
    assert _node(b)["disk_free_limit"] == HUGE
    assert not any("Traceback" in line for line in b.lines)


def test_memory_watermark_is_relative_to_ram_by_default(broker):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    node = _node(broker)
    assert node["mem_limit"] == int(ram * 0.4)
    assert node["mem_alarm"] is False
    assert node["disk_free_limit"] == 50_000_000 and node["disk_free_alarm"] is False


def test_memory_watermark_set_at_run_time(tmp_path):
    with BrokerProcess(tmp_path) as b:
        events: list[str] = []
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        conn.add_on_connection_blocked_callback(
            lambda _c, m: events.append("blocked:" + m.method.reason))
        conn.add_on_connection_unblocked_callback(lambda _c, _m: events.append("unblocked"))
        ch = conn.channel()
        ch.queue_declare("t.mem", durable=True)
        ch.basic_publish("", "t.mem", b"x" * 100_000)
        ctl(b, "set_vm_memory_high_watermark", "absolute", "50kB")

        def saw(event: str) -> bool:
            conn.process_data_events(time_limit=0.05)
            return event in events
        eventually(lambda: saw("blocked:low on memory"), "connection.blocked")
        node = _node(b)
        assert node["mem_limit"] == 50_000 and node["mem_alarm"] is True
        ctl(b, "set_vm_memory_high_watermark", "0.4")
        eventually(lambda: saw("unblocked"), "connection.unblocked")
        # a publisher that meets both alarms: RabbitMQ 3.10 says "low on disk & memory"
        ctl(b, "set_vm_memory_high_watermark", "absolute", "50kB")
        ctl(b, "set_disk_free_limit", str(HUGE))
        eventually(lambda: _node(b)["disk_free_alarm"] and _node(b)["mem_alarm"], "both alarms")
        both: list[str] = []
        second = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        second.add_on_connection_blocked_callback(lambda _c, m: both.append(m.method.reason))
        second.channel().basic_publish("", "t.mem", b"y")

        def second_saw() -> bool:
            second.process_data_events(time_limit=0.05)
            return bool(both)
        eventually(second_saw, "the second publisher blocked")
        assert both == ["low on disk & memory"]
        ctl(b, "set_disk_free_limit", "0")
        ctl(b, "set_vm_memory_high_watermark", "0.4")
        eventually(lambda: events.count("unblocked") == 2 or saw("-"), "unblocked again")
        second.close()
        assert _node(b)["mem_alarm"] is False
        conn.close()


def test_relative_disk_limit_and_watermark_from_flags(tmp_path):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with BrokerProcess(tmp_path, extra_args=["--disk-free-limit-relative", "100000",
                                             "--memory-high-watermark-relative", "0.25"]) as b:
        b.wait_for_line("below the limit of")
        node = _node(b)
        assert node["disk_free_limit"] == int(ram * 100000) and node["disk_free_alarm"] is True
        assert node["mem_limit"] == int(ram * 0.25)
        assert _gauge(_metrics(b), "rabbitmq_resident_memory_limit_bytes") == int(ram * 0.25)
