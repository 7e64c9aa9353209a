"""Connection level: protocol header, SASL, tune negotiation, heartbeats, server properties.

RabbitMQ's behaviour is the reference (``rabbit_reader.erl``): a wrong protocol header gets the
header we speak and a close; a failed login is 403 ACCESS_REFUSED when the client announced
``authentication_failure_close``; an unknown vhost is 530 NOT_ALLOWED; channels beyond the
negotiated channel_max are 530 too; a peer silent for two heartbeat intervals is dropped.
"""

from __future__ import annotations

import socket

import amqp
import pika
import pytest
import requests
from pamqp import commands, frame
from pika.exceptions import ProbableAuthenticationError

from tests.amqp.raw_client import PROTOCOL_HEADER, Closed, RawAmqp
from tests.polling import eventually


def _params(broker, **kw):
    return pika.ConnectionParameters(host="127.0.0.1", port=broker.amqp_port,
                                     credentials=pika.PlainCredentials(
                                         kw.pop("user", "guest"), kw.pop("password", "guest")),
                                     **kw)


# ---------------------------------------------------------------- protocol header
# (AMQP 1.0's headers, AMQP 3 1 0 0 and AMQP 0 1 0 0, are served on this port: tests/amqp1)
@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x09\x02", b"AMQP\x01\x01\x09\x01",
                                    b"HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n"])
def test_wrong_protocol_header_gets_ours_and_close(broker, header):
    with socket.create_connection(("127.0.0.1", broker.amqp_port), timeout=5) as s:
        s.sendall(header)
        got = b""
        while True:
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
    assert got == PROTOCOL_HEADER


def test_header_split_byte_by_byte_is_accepted(broker):
    raw = RawAmqp(broker.amqp_port)
    for b in PROTOCOL_HEADER:
        raw.send(bytes((b,)))
    start = raw.expect(commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    raw.close()


# ---------------------------------------------------------------- server properties
def test_server_properties_and_capabilities_as_rabbitmq(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    start = raw.expect(commands.Connection.Start)
    raw.close()
    props = start.server_properties
    for key in ("product", "version", "platform", "copyright", "information", "cluster_name"):
        assert key in props
    caps = props["capabilities"]
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "consumer_priorities",
                "authentication_failure_close", "per_consumer_qos", "direct_reply_to"):
        assert caps[cap] is True, cap
    assert start.mechanisms.split() == ["PLAIN", "AMQPLAIN"]
    assert start.locales == "en_US"


def test_pika_sees_capabilities(broker):
    conn = pika.BlockingConnection(_params(broker))
    caps = conn._impl.server_capabilities
    assert caps["connection.blocked"] and caps["publisher_confirms"]
    conn.close()


# ---------------------------------------------------------------- SASL
@pytest.mark.parametrize("mechanism", ["AMQPLAIN", "PLAIN"])
def test_py_amqp_logs_in_with_each_mechanism(broker, mechanism, unique):
    conn = amqp.Connection(f"127.0.0.1:{broker.amqp_port}", userid="guest", password="guest",
                           login_method=mechanism)
    conn.connect()
    ch = conn.channel()
    ch.queue_declare(unique, auto_delete=True)
    ch.basic_publish(amqp.Message("x"), routing_key=unique)
    assert ch.basic_get(unique, no_ack=True).body == "x"
    conn.close()


def test_kombu_default_login_works(broker, unique):
    import kombu
    with kombu.Connection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}//") as conn:
        conn.connect()
        # kombu's py-amqp transport prefers AMQPLAIN when the server offers it
        assert conn.connection.mechanisms[:2] == [b"PLAIN", b"AMQPLAIN"]
        q = conn.SimpleQueue(unique)
        q.put({"a": 1})
        assert q.get(timeout=5).payload == {"a": 1}
        q.close()


def test_bad_password_is_403_access_refused(broker):
    with pytest.raises(ProbableAuthenticationError) as e:
        pika.BlockingConnection(_params(broker, password="wrong"))
    # pika wraps the broker's connection.close in the message of ProbableAuthenticationError
    assert "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism " \
        "PLAIN. For details see the broker logfile.'" in str(e.value)


def test_bad_password_raw_close_code_and_text(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.expect(commands.Connection.Start)
    raw.send_frame(commands.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism="PLAIN", response="\0guest\0nope", locale="en_US"))
    close = raw.expect(commands.Connection.Close)
    assert close.reply_code == 403
    assert close.reply_text == ("ACCESS_REFUSED - Login was refused using authentication "
                                "mechanism PLAIN. For details see the broker logfile.")
    raw.wait_closed()


def test_bad_password_without_capability_just_closes(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.expect(commands.Connection.Start)
    raw.send_frame(commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0nope", locale="en_US"))
    with pytest.raises(Closed):
        raw.read_frame()


def test_unknown_mechanism_is_refused(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.expect(commands.Connection.Start)
    raw.send_frame(commands.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism="EXTERNAL", response="", locale="en_US"))
    close = raw.expect_connection_close()
    # rabbit_reader:auth_mechanism_to_module: command_invalid for a mechanism not offered
    assert close.reply_code == 503
    assert close.reply_text == "COMMAND_INVALID - unknown authentication mechanism 'EXTERNAL'"
    raw.wait_closed()


def test_unknown_vhost_is_530_not_allowed(broker):
    from pika.exceptions import ProbableAccessDeniedError
    with pytest.raises(ProbableAccessDeniedError) as e:
        pika.BlockingConnection(_params(broker, virtual_host="no-such-vhost"))
    # rabbit_access_control:check_vhost_access words both a missing vhost and no permission so
    assert "(530) \"NOT_ALLOWED - access to vhost 'no-such-vhost' refused for user " \
        "'guest'\"" in str(e.value)


# ---------------------------------------------------------------- tune
def test_tune_offers_rabbitmq_defaults(broker):
    raw = RawAmqp(broker.amqp_port)
    tune = raw.handshake()
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
    raw.close()


def test_negotiated_frame_max_splits_deliveries(broker, unique):
    pub = pika.BlockingConnection(_params(broker))
    pch = pub.channel()
    pch.queue_declare(unique, auto_delete=False)
    body = bytes(range(256)) * 100  # 25600 bytes
    pch.basic_publish("", unique, body)
    raw = RawAmqp(broker.amqp_port)
    raw.handshake(frame_max=4096)
    raw.open_channel(1)
    raw.send_frame(commands.Basic.Get(queue=unique, no_ack=True), 1)
    raw.expect(commands.Basic.GetOk)
    _, header = raw.read_frame()
    assert header.body_size == len(body)
    got = b""
    while len(got) < len(body):
        _, frame = raw.read_frame()
        assert len(frame.value) <= 4096 - 8
        got += frame.value
    assert got == body
    raw.close()
    pch.queue_delete(unique)
    pub.close()


def test_frame_max_below_minimum_is_refused(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.send(PROTOCOL_HEADER)
    raw.expect(commands.Connection.Start)
    raw.send_frame(commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))
    raw.expect(commands.Connection.Tune)
    raw.send_frame(commands.Connection.TuneOk(channel_max=0, frame_max=1024, heartbeat=0))
    close = raw.expect_connection_close()
    assert close.reply_code == 530
    raw.wait_closed()


def test_channel_max_is_enforced(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake(channel_max=2)
    raw.open_channel(1)
    raw.open_channel(2)
    raw.send_frame(commands.Channel.Open(), 3)
    close = raw.expect_connection_close()
    assert close.reply_code == 530
    assert close.reply_text == ("NOT_ALLOWED - number of channels opened (2) has reached the "
                                "negotiated channel_max (2)")
    raw.wait_closed()


def test_pika_negotiates_smaller_channel_max(broker):
    conn = pika.BlockingConnection(_params(broker, channel_max=3))
    chans = [conn.channel() for _ in range(3)]
    assert [c.channel_number for c in chans] == [1, 2, 3]
    with pytest.raises(pika.exceptions.NoFreeChannels):
        conn.channel()
    conn.close()


def test_many_channels_on_one_connection(broker, unique):
    conn = pika.BlockingConnection(_params(broker))
    chans = [conn.channel() for _ in range(200)]
    chans[0].queue_declare(unique, auto_delete=True)
    for i, ch in enumerate(chans):
        ch.basic_publish("", unique, str(i).encode())
    got = set()
    for _ in range(200):
        _, _, body = chans[-1].basic_get(unique, auto_ack=True)
        got.add(int(body))
    assert got == set(range(200))
    for ch in chans[::2]:
        ch.close()
    assert all(ch.is_open for ch in chans[1::2])
    conn.close()


# ---------------------------------------------------------------- heartbeats
def test_server_sends_heartbeats(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake(heartbeat=1)
    _, frame = raw.read_frame(timeout=5)
    assert frame.name == "Heartbeat"
    raw.close()


def test_silent_client_is_dropped_after_two_heartbeats(broker):
    raw = RawAmqp(broker.amqp_port)
    raw.handshake(heartbeat=1)
    # the client now says nothing; the broker must close within ~2 heartbeat intervals
    raw.wait_closed(timeout=6)


def test_client_heartbeats_keep_connection_alive(broker, unique):
    conn = pika.BlockingConnection(_params(broker, heartbeat=1))
    ch = conn.channel()
    import time
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert conn.is_open
    ch.queue_declare(unique, auto_delete=True)
    conn.close()


# ---------------------------------------------------------------- many connections dropped at once
# The broker tears lost connections down a slice per reactor turn (``warren/poll_slices.py``);
# what must not change with that: every message a dropped connection held unacked is back in
# its queue once, in its place; the dropped consumers are gone from the counts; the dropped
# connections' exclusive queues are deleted; a client connected meanwhile declares one of
# their names as its own and consumes; the log has no traceback. The connections speak the
# protocol by hand (``RawAmqp``): hundreds open in well under a second. One more connection
# closes with connection.close meanwhile: its exclusive queue is gone once it has close-ok, so
# another client declares that name at once.
MASS_CONNECTIONS = 200


def _holding(port: int, work: str, prefix: str, count: int) -> list[RawAmqp]:
    """``count`` connections, each with an exclusive queue of its own (``prefix`` and its
    index) and one unacked message of ``work``; each step is sent on every connection before
    the answers are read, so the round trips overlap."""
    raws = [RawAmqp(port) for _ in range(count)]
    for raw in raws:
        raw.send(PROTOCOL_HEADER)
    for raw in raws:
        raw.expect(commands.Connection.Start)
        raw.send_frame(commands.Connection.StartOk(
            client_properties={"product": "mass disconnect test"}, mechanism="PLAIN",
            response="\0guest\0guest", locale="en_US"))
    for i, raw in enumerate(raws):
        raw.expect(commands.Connection.Tune)
        raw.send(b"".join(frame.marshal(method, number) for number, method in (
            (0, commands.Connection.TuneOk(frame_max=131072)),
            (0, commands.Connection.Open(virtual_host="/")),
            (1, commands.Channel.Open()),
            (1, commands.Basic.Qos(prefetch_count=1)),
            (1, commands.Queue.Declare(queue=f"{prefix}{i}", exclusive=True)),
            (1, commands.Basic.Consume(queue=work)))))
    for raw in raws:
        for answer in (commands.Connection.OpenOk, commands.Channel.OpenOk,
                       commands.Basic.QosOk, commands.Queue.DeclareOk,
                       commands.Basic.ConsumeOk, commands.Basic.Deliver):
            raw.expect(answer)
    return raws


def _queues(broker, prefix: str) -> dict[str, dict]:
    r = requests.get(f"http://127.0.0.1:{broker.http_port}/api/queues/%2F",
                     auth=("guest", "guest"), timeout=30)
    r.raise_for_status()
    return {q["name"]: q for q in r.json() if q["name"].startswith(prefix)}


def test_connections_dropped_at_once_requeue_release_and_leave_no_trace(broker, unique):
    work = f"{unique}.work"
    bodies = [f"m{i}".encode() for i in range(MASS_CONNECTIONS)]
    other = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = other.channel()
        ch.queue_declare(work)
        for body in bodies:
            ch.basic_publish("", work, body)
        dropped = _holding(broker.amqp_port, work, f"{unique}.excl", MASS_CONNECTIONS)
        declared = ch.queue_declare(work, passive=True).method
        assert (declared.message_count, declared.consumer_count) == (0, MASS_CONNECTIONS)
        owner = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        owner.channel().queue_declare(f"{unique}.owned", exclusive=True)
        for raw in dropped:                 # all at once, no connection.close
            raw.close()
        # closed with connection.close among them: once it has close-ok its exclusive queue
        # is gone, whatever teardowns the broker still has to do
        owner.close()
        ch.queue_declare(f"{unique}.owned", exclusive=True)

        def settled():
            q = ch.queue_declare(work, passive=True).method
            gone = not any(".excl" in name for name in _queues(broker, unique))
            return (q.message_count, q.consumer_count) == (MASS_CONNECTIONS, 0) and gone
        eventually(settled, "the dropped connections' messages requeued, consumers and "
                            "exclusive queues gone", timeout=60)

        # every message back once, in its place, marked redelivered
        got = []
        for method, _props, body in ch.consume(work, auto_ack=True):
            got.append((body, method.redelivered))
            if len(got) == MASS_CONNECTIONS:
                break
        ch.cancel()
        assert got == [(body, True) for body in bodies]
        assert ch.queue_declare(work, passive=True).method.message_count == 0

        # a client connected all along takes a dropped connection's exclusive name and uses it
        name = f"{unique}.excl0"
        ch.queue_declare(name, exclusive=True)
        ch.basic_publish("", name, b"mine")
        method, _props, body = ch.basic_get(name, auto_ack=True)
        assert (body, method.redelivered) == (b"mine", False)
    finally:
        other.close()
    assert not any("Traceback" in line for line in broker.lines)
