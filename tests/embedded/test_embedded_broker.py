"""``warren.embedded.Broker``: a whole warren that a Python program starts and stops itself.

One broker serves the client tests (pika, stomp.py, paho: each protocol's listener is up when
``start()`` returns); the life-cycle tests start their own, with ``tempfile`` pointed at the
test's directory so that "leaves no files" is checked on a directory nothing else writes to.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pika
import pytest
import requests
import stomp
import websocket

from tests.polling import eventually
from warren.ctl import ApiError
from warren.embedded import Broker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded():
    with Broker() as b:
        yield b


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """``tempfile`` creates the broker's directory in this test's own directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def process_gone(pid: int) -> bool:
    """Ended: no such process, or a zombie no one reaped yet (a grandchild of this test)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_pika_round_trip(embedded):
    name = f"emb.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(embedded.amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare(name, durable=True)
        ch.basic_publish("", name, b"hello", pika.BasicProperties(delivery_mode=2))
        method, _props, body = ch.basic_get(name, auto_ack=True)
        assert body == b"hello" and method is not None
    finally:
        conn.close()


def test_stomp_round_trip(embedded):
    received: queue.Queue = queue.Queue()

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            received.put(frame.body)

    conn = stomp.Connection12([("127.0.0.1", embedded.stomp_port)])
    conn.set_listener("", Listener())
    conn.connect(embedded.username, embedded.password, wait=True)
    try:
        destination = f"/queue/emb.{uuid.uuid4().hex[:8]}"
        conn.subscribe(destination, id="1", ack="auto")
        conn.send(destination, "over stomp", receipt="r1")
        assert received.get(timeout=30) == "over stomp"
    finally:
        conn.disconnect()


def test_mqtt_round_trip(embedded):
    received: queue.Queue = queue.Queue()
    subscribed: queue.Queue = queue.Queue()
    topic = f"emb/{uuid.uuid4().hex[:8]}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"emb-{uuid.uuid4().hex}")
    client.username_pw_set(embedded.username, embedded.password)
    client.on_message = lambda _c, _u, msg: received.put(msg.payload)
    client.on_subscribe = lambda *_a: subscribed.put(True)
    client.connect("127.0.0.1", embedded.mqtt_port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.get(timeout=30)
        client.publish(topic, b"over mqtt", qos=1).wait_for_publish(30)
        assert received.get(timeout=30) == b"over mqtt"
    finally:
        client.disconnect()
        client.loop_stop()


def test_web_stomp_and_web_mqtt_on_their_own_free_ports(embedded):
    assert embedded.web_stomp_url == f"ws://127.0.0.1:{embedded.web_stomp_port}/ws"
    ws = websocket.create_connection(embedded.web_stomp_url, subprotocols=["v12.stomp"],
                                     timeout=30)
    try:
        ws.send(f"CONNECT\naccept-version:1.2\nhost:/\nlogin:{embedded.username}\n"
                f"passcode:{embedded.password}\n\n\x00")
        assert ws.recv().startswith("CONNECTED")
    finally:
        ws.close()
    connected: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"emb-{uuid.uuid4().hex}",
                         transport="websockets")
    client.ws_set_options(path="/ws")
    client.username_pw_set(embedded.username, embedded.password)
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    client.connect("127.0.0.1", embedded.web_mqtt_port)
    client.loop_start()
    try:
        assert connected.get(timeout=30) == 0
    finally:
        client.disconnect()
        client.loop_stop()


def test_http_api_answers_as_the_default_user(embedded):
    r = requests.get(f"{embedded.http_url}/api/whoami",
                     auth=(embedded.username, embedded.password), timeout=30)
    assert r.status_code == 200 and r.json()["name"] == embedded.username


def test_a_chosen_user_is_the_administrator_and_its_password_is_encoded_in_the_url(private_tmp):
    with Broker(username="bob", password="p@ss/w:rd") as b:
        assert "p%40ss%2Fw%3Ard@" in b.amqp_url
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        conn.close()
        assert b.api().call("GET", "/api/whoami") == {"name": "bob", "tags": ["administrator"]}
        r = requests.get(f"{b.http_url}/api/whoami", auth=("guest", "guest"), timeout=30)
        assert r.status_code == 401      # the default user replaced, not added to


def test_add_vhost_gives_the_user_a_vhost_it_can_use_and_delete_vhost_removes_it(embedded):
    name = f"emb/{uuid.uuid4().hex[:8]}"   # a slash: the URI must %-encode it
    url = embedded.add_vhost(name)
    assert url.endswith("/" + name.replace("/", "%2F"))
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        conn.channel().queue_declare("in-the-vhost")
    finally:
        conn.close()
    embedded.delete_vhost(name)
    assert name not in embedded.vhosts()
    embedded.delete_vhost(name, missing_ok=True)      # already gone: no error
    with pytest.raises(ApiError, match=f"vhost '{name}' not found"):
        embedded.delete_vhost(name)


def test_stop_ends_the_process_closes_the_ports_and_leaves_no_files(private_tmp):
    b = Broker().start()
    pid, ports = b.pid, [b.amqp_port, b.stomp_port, b.mqtt_port, b.http_port]
    assert b.data_dir and os.listdir(b.data_dir)     # the store was there while it ran
    b.stop()
    assert not b.running and b.data_dir is None
    assert process_gone(pid)
    assert all(refuses(port) for port in ports)
    assert list(private_tmp.iterdir()) == []
    assert b.returncode == 0, b.log()
    assert b.log().endswith("warren stopped") and "Traceback" not in b.log()
    b.stop()   # a second stop does nothing


def test_with_block_stops_even_when_the_body_raises(private_tmp):
    with pytest.raises(ZeroDivisionError):
        with Broker() as b:
            pid = b.pid
            1 / 0
    assert process_gone(pid) and list(private_tmp.iterdir()) == []


def test_sqlite_store_keeps_messages_in_the_temporary_directory(private_tmp):
    with Broker(store="sqlite") as b:
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("kept", durable=True)
        ch.basic_publish("", "kept", b"x", pika.BasicProperties(delivery_mode=2))
        conn.close()
        assert os.path.isfile(os.path.join(b.data_dir, "data", "warren.db"))
        assert "store: sql" in b.log()
    assert list(private_tmp.iterdir()) == []


def test_memory_store_serves_and_leaves_nothing(private_tmp):
    with Broker(store="memory") as b:
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        ch.queue_declare("q")
        ch.basic_publish("", "q", b"in memory")
        assert ch.basic_get("q", auto_ack=True)[2] == b"in memory"
        conn.close()
        assert "store: memory" in b.log()
    assert b.returncode == 0 and list(private_tmp.iterdir()) == []


def test_extra_args_reach_warren_run(private_tmp):
    with Broker(extra_args=["--max-message-size", "16"]) as b:
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        ch.queue_declare("small")
        ch.basic_publish("", "small", b"x" * 17)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            ch.basic_get("small")
        assert closed.value.reply_code == 406
        conn.close()
        assert "Traceback" not in b.log()


def test_unknown_store_is_refused_before_anything_starts(private_tmp):
    with pytest.raises(ValueError, match="store 'mongodb': give one of journal, sqlite, memory"):
        Broker(store="mongodb")
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("args, says", [
    (["--amqp-port", "5672"], "--amqp-port is the embedded broker's own: it picks free ports"),
    (["--log-level=warning"], "--log-level is the embedded broker's own: it waits for the INFO"),
    (["--data-dir", "/var/lib/x"], "--data-dir is the embedded broker's own: its data directory "
                                   "is a temporary one"),
    (["--store", "sql"], "--store is the embedded broker's own: choose it with Broker(store=")])
def test_flags_the_broker_sets_itself_are_refused_in_extra_args(private_tmp, args, says):
    with pytest.raises(ValueError, match=re.escape("extra_args: " + says)):
        Broker(extra_args=args)
    assert list(private_tmp.iterdir()) == []


def test_a_broker_that_cannot_start_says_why_and_leaves_nothing(private_tmp):
    b = Broker(extra_args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="broker did not start") as failed:
        b.start()
    assert "unrecognized arguments: --no-such-flag" in str(failed.value)
    assert "Traceback" not in str(failed.value)
    assert not b.running and list(private_tmp.iterdir()) == []


def test_ports_before_start_and_a_second_start_are_errors(private_tmp):
    b = Broker()
    with pytest.raises(RuntimeError, match="not started"):
        b.amqp_url
    with b:
        with pytest.raises(RuntimeError, match="already running"):
            b.start()


def test_a_program_killed_without_stop_takes_its_broker_and_files_with_it(tmp_path):
    """SIGKILL gives the program no chance to call stop(): the broker notices on its own."""
    program = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom warren.embedded import Broker\n"
         "b = Broker().start()\nprint(b.pid, b.data_dir, b.amqp_port, flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, TMPDIR=str(tmp_path)))
    try:
        pid, data_dir, amqp_port = program.stdout.readline().split()
    finally:
        program.kill()
        program.wait(30)
    assert data_dir.startswith(str(tmp_path))
    eventually(lambda: process_gone(int(pid)), "the broker to end", timeout=60)
    eventually(lambda: list(tmp_path.iterdir()) == [], "its directory to be removed",
               timeout=60)
    assert refuses(int(amqp_port))


def test_the_callers_process_gets_no_twisted():
    """The broker's reactor is in its own process: importing the embedded broker or the
    plugin must not install a reactor in the caller's (pytest-twisted, asyncio suites...)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, warren.embedded, warren.pytest_plugin\n"
         "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_two_brokers_at_once_are_apart(private_tmp):
    with Broker() as one, Broker() as two:
        ports = {getattr(b, f"{kind}_port") for b in (one, two)
                 for kind in ("amqp", "stomp", "mqtt", "http", "web_stomp", "web_mqtt")}
        assert len(ports) == 12 and one.data_dir != two.data_dir
        for b, name in ((one, "only-on-one"), (two, "only-on-two")):
            conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
            conn.channel().queue_declare(name)
            conn.close()
        assert "only-on-two" not in {q["name"] for q in one.api().call("GET", "/api/queues")}
        assert "only-on-one" not in {q["name"] for q in two.api().call("GET", "/api/queues")}
    assert list(private_tmp.iterdir()) == []


def test_a_picked_port_taken_before_the_bind_is_picked_again(tmp_path):
    """Another process binds one of the ports a ``BrokerProcess`` picked before the broker
    does (tests run side by side): the broker that waits for it started on new ports, even
    when the start and the wait are two calls, and even when, as an embedded broker's, the
    first process removed its working directory as it ended."""
    from warren.embedded.process import BrokerProcess

    home = tmp_path / "home"
    home.mkdir()
    proc = BrokerProcess(home / "data", cwd=home,
                         launcher=("-m", "warren.embedded.tied", "--remove-dir", str(home)),
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                         stdin=subprocess.PIPE)   # tied.py: the broker ends with its input
    taken = proc.amqp_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        proc.start(wait=False)
        try:
            proc.wait_ready(60)
            assert proc.amqp_port != taken   # the first process found it in use and ended
            conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
            assert conn.is_open
            conn.close()
        finally:
            proc.stop()
