"""AMQP 1.0 on port 5672 beside 0-9-1: python-qpid-proton's blocking client against the
broker, messages across to pika and back with RabbitMQ 4's property mapping, dispositions,
and bad input (raw frames) with the spec's error conditions and no traceback in the log."""

from __future__ import annotations

import struct
import uuid
from urllib.parse import quote

import pika
import requests
import pytest
from proton import Delivery, Message, Timeout, symbol, ubyte, ulong
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection, ConnectionClosed, LinkDetached, SendException

from tests.amqp1.raw import Raw, close_error
from tests.polling import eventually
from warren.amqp1_message.codec import AMQP_HEADER, SASL_FRAME, SASL_HEADER, Composite, Symbol, \
    encode_frame, encode_message


KEEP = "t.amqp1.keep"
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.fixture(scope="module", autouse=True)
def stored(broker):
    """A durable message stored before the bad input, still there after it."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(KEEP, durable=True)
    ch.basic_publish("", KEEP, b"precious", pika.BasicProperties(delivery_mode=2))
    conn.close()


def depth(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def got_one(result):
    """basic_get's (method, properties, body), or None when the queue was empty."""
    return result if result[0] is not None else None


def test_send_and_receive_through_a_queue(amqp1, channel, unique):
    channel.queue_declare(unique, durable=True)
    sender = amqp1.create_sender(f"/queues/{unique}")
    sender.send(Message(body=b"hello", durable=True, properties={"k": "v"}, subject="s",
                        id="m-1", correlation_id="c-1", content_type="text/plain",
                        reply_to="queue://replies"))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == b"hello"
    assert got.properties == {"k": "v"}
    assert (got.subject, got.id, got.correlation_id) == ("s", "m-1", "c-1")
    assert got.content_type == "text/plain" and got.durable
    assert got.reply_to == "queue://replies"     # as sent
    eventually(lambda: depth(channel, unique) == 0, "the accepted message acked")


def test_amqp1_publish_reaches_a_pika_consumer(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.direct", routing_key=unique)
    sender = amqp1.create_sender(f"/exchanges/amq.direct/{unique}")
    sender.send(Message(body=b"to pika", inferred=True, durable=True,   # a data section
                        properties={"n": 7, "s": "x"}, subject="kind", id="id-1",
                        reply_to="/queues/r", priority=5, content_type="application/json",
                        user_id=b"guest", correlation_id=ID, group_id="g"))
    got = eventually(lambda: got_one(channel.basic_get(unique, auto_ack=True)), "a message")
    method, props, body = got
    assert body == b"to pika"
    assert props.delivery_mode == 2 and props.priority == 5
    # the subject is no 0-9-1 property, and a data body has no type (RabbitMQ 4's mc_amqpl)
    assert props.type is None and props.message_id == "id-1"
    # a queue's address is its name, the group-id the app-id (RabbitMQ 4's mc_amqpl)
    assert props.reply_to == "r" and props.content_type == "application/json"
    assert props.app_id == "g"
    assert props.user_id == "guest"
    assert props.correlation_id == ID.urn   # a uuid as its URN, as RabbitMQ 4's mc_amqpl
    assert props.headers == {"n": 7, "s": "x"}


def test_pika_publish_reaches_an_amqp1_receiver(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"from pika", pika.BasicProperties(
        headers={"h": "v", "i": 3}, type="t", message_id="m", correlation_id=ID.urn,
        reply_to="replies", app_id="app",
        content_type="text/plain", delivery_mode=2, timestamp=1700000000))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == b"from pika"
    assert got.properties == {"h": "v", "i": 3}
    # a uuid's URN is the uuid again, and the type an x-basic-type annotation, not the
    # subject, as RabbitMQ 4's mc_amqpl converts them
    assert (got.subject, got.id, got.correlation_id) == (None, "m", ID)
    assert got.annotations["x-basic-type"] == "t"
    assert (got.reply_to, got.group_id) == ("/queues/replies", "app")
    assert got.durable and got.creation_time == 1700000000


def test_quiet_connection_kept_open_for_the_clients_idle_time_out(broker, unique):
    # proton closes a connection that is silent for its idle time-out (heartbeat=2: 2 s, it
    # offers 1000 ms), so staying open through two of them shows the broker's empty frames
    conn = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30, heartbeat=2)
    with pytest.raises(Timeout):
        conn.wait(lambda: False, timeout=4)
    conn.close()


def test_idle_time_out_under_a_second_is_refused(broker):
    # as RabbitMQ 4: proton's heartbeat=1 offers 500 ms
    with pytest.raises(ConnectionClosed) as caught:
        BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                           allowed_mechs="PLAIN", timeout=30, heartbeat=1)
    assert "amqp:not-allowed" in str(caught.value)
    assert "idle-time-out (500 ms) < minimum idle-time-out (1000 ms)" in str(caught.value)


def test_released_comes_back_and_rejected_is_gone(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"one")
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    first = receiver.receive(timeout=30)
    receiver.release()
    again = receiver.receive(timeout=30)
    assert bytes(again.body) == bytes(first.body) == b"one"
    receiver.reject()
    receiver.close()
    eventually(lambda: depth(channel, unique) == 0, "the rejected message dropped")


def test_unsettled_deliveries_come_back_when_the_connection_closes(broker, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"again")
    conn = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)
    got = conn.create_receiver(f"/queues/{unique}").receive(timeout=30)
    assert bytes(got.body) == b"again"
    assert depth(channel, unique) == 0          # delivered, not yet settled
    conn.close()
    method, _props, body = eventually(
        lambda: got_one(channel.basic_get(unique, auto_ack=True)), "the message requeued")
    assert body == b"again" and method.redelivered


def test_at_most_once_receiver_gets_settled_deliveries(broker, amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"once")
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=AtMostOnce())
    got = receiver.receive(timeout=30)
    assert bytes(got.body) == b"once"
    # settled on sending: the queue holds it neither ready nor unacknowledged
    api = f"{broker.http_url}/api/queues/%2F/{quote(unique, safe='')}"
    eventually(lambda: requests.get(api, auth=("guest", "guest")).json().get(
        "messages_unacknowledged") == 0, "no unacknowledged message")
    assert depth(channel, unique) == 0
    receiver.close()


def test_unsettled_sends_are_accepted(amqp1, channel, unique):
    channel.queue_declare(unique, durable=True)
    sender = amqp1.create_sender(f"/queues/{unique}")
    for i in range(1050):      # beyond the first grant of credit (1,000): it is topped up
        sender.send(Message(body=f"m{i}".encode(), durable=True))
    assert depth(channel, unique) == 1050


def test_unroutable_is_released(amqp1, unique):
    sender = amqp1.create_sender("/exchanges/amq.direct/nobody-binds-this")
    with pytest.raises(SendException) as caught:
        sender.send(Message(body=b"lost"))
    assert caught.value.state == Delivery.RELEASED


def test_exchange_address_without_key_uses_the_empty_key(amqp1, channel, unique):
    # RabbitMQ 4's v2 target /exchanges/X routes by the empty key (its
    # parse_target_v2_string); only the v1 forms (/exchange/X, /queue) route by the subject
    channel.exchange_declare(unique, "direct")
    for queue, key in ((unique, ""), (f"{unique}-by-subject", unique)):
        channel.queue_declare(queue)
        channel.queue_bind(queue, unique, routing_key=key)
    for address in (f"/exchanges/{unique}", f"/exchange/{unique}"):
        amqp1.create_sender(address).send(
            Message(body=address.encode(), inferred=True, subject=unique))
    assert got_one(channel.basic_get(unique, auto_ack=True))[2] == f"/exchanges/{unique}".encode()
    assert got_one(channel.basic_get(f"{unique}-by-subject", auto_ack=True))[2] == \
        f"/exchange/{unique}".encode()
    assert channel.queue_declare(unique, passive=True).method.message_count == 0


def test_big_messages_both_ways(amqp1, channel, unique):
    channel.queue_declare(unique)
    big = bytes(range(256)) * 2048           # 512 KiB: many frames each way
    sender = amqp1.create_sender(f"/queues/{unique}")
    sender.send(Message(body=big, inferred=True))           # a data section
    assert got_one(channel.basic_get(unique, auto_ack=True))[2] == big
    channel.basic_publish("", unique, big)
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == big


def test_modified_requeues_and_undeliverable_here_rejects(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"m")
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    receiver.receive(timeout=30)
    receiver.settle(Delivery.MODIFIED)                  # delivery-failed unset: requeued
    again = receiver.receive(timeout=30)
    assert bytes(again.body) == b"m"
    receiver.fetcher.unsettled[0].local.undeliverable = True
    receiver.settle(Delivery.MODIFIED)                  # undeliverable-here: rejected
    receiver.close()
    eventually(lambda: depth(channel, unique) == 0, "the message rejected")


def test_v1_addresses(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.topic", routing_key=f"{unique}.t")
    amqp1.create_sender(f"/amq/queue/{unique}").send(Message(body=b"1"))
    amqp1.create_sender(f"/topic/{unique}.t").send(Message(body=b"2"))
    receiver = amqp1.create_receiver(f"/amq/queue/{unique}")
    bodies = []
    for _ in range(2):
        got = receiver.receive(timeout=30)   # held: proton's body is a view into the message
        bodies.append(bytes(got.body))
        receiver.accept()
    assert bodies == [b"1", b"2"]


def test_bad_address_is_invalid_field(amqp1):
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_sender("/nowhere/x")
    assert "amqp:invalid-field" in str(caught.value)


@pytest.mark.parametrize("address", ["/queues/{}", "/exchanges/{}/k"])
def test_missing_node_is_not_found(amqp1, unique, address):
    with pytest.raises(LinkDetached) as caught:
        # names are percent-encoded in v2 addresses (this test's name holds a '/')
        amqp1.create_sender(address.format(quote(unique, safe="")))
    assert "amqp:not-found" in str(caught.value)


def test_receiving_from_a_missing_queue_is_not_found(amqp1, unique):
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_receiver(f"/queues/{unique}")
    assert "amqp:not-found" in str(caught.value)
    assert f"no queue '{unique}' in vhost '/'" in str(caught.value)


def test_another_connections_exclusive_queue_is_locked(amqp1, channel, unique):
    channel.queue_declare(unique, exclusive=True)
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_receiver(f"/queues/{unique}")
    assert "amqp:resource-locked" in str(caught.value)


# ------------------------------------------------------------------ raw frames
@pytest.mark.parametrize("body", [
    b"\x00\x53\x10\xa1\x05ab",                 # string cut short inside a performative
    b"\x00\x53\x12\xc0\x02\x01\xff",           # unknown type constructor
    b"\xa1\x01x",                              # a frame body that is not a performative
    b"\x00\x53\x11\xc0\x03\x01\xa1\x00",       # begin whose remote-channel is a string
    b"\x00\x53\x12\xc0\x06\x02\xa1\x01l\xa1\x01h",  # attach whose handle is a string
    b"\x00\x53\x15\xc0\x02\x01\x41",               # disposition without its first
])
def test_malformed_frame_is_decode_error(broker, body):
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.sock.sendall(struct.pack(">IBBH", 8 + len(body), 2, 0, 0) + body)
    err = close_error(raw)
    assert err.condition == "amqp:decode-error"


def test_frame_over_max_frame_size_is_framing_error(broker):
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.sock.sendall(struct.pack(">IBBH", 1 << 24, 2, 0, 0))
    assert close_error(raw).condition == "amqp:connection:framing-error"


def test_transfer_on_an_unattached_handle(broker):
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=0, incoming_window=10,
                                            outgoing_window=10)))
    assert raw.frame().performative.kind == "begin"
    raw.sock.sendall(encode_frame(Composite("transfer", handle=9, delivery_id=0,
                                            delivery_tag=b"t"), 0, b"\x00\x53\x77\x40"))
    assert close_error(raw).condition == "amqp:session:unattached-handle"


def test_user_id_of_another_user_ends_the_session(broker, unique):
    raw = Raw(broker.amqp_port)
    raw.open()                                          # ANONYMOUS: the default user, guest
    raw.begin()
    raw.attach_sender(Composite("target", address=f"/queue/{unique}"))
    spoofed = encode_message({"properties": Composite("properties", user_id=b"someone"),
                              "data": [b"x"]})
    raw.sock.sendall(encode_frame(Composite("transfer", handle=0, delivery_id=0,
                                            delivery_tag=b"t"), 0, spoofed))
    end = raw.frame().performative
    assert end.kind == "end" and end.error.condition == "amqp:unauthorized-access"
    assert end.error.description == \
        "user_id property set to 'someone' but authenticated user was 'guest'"
    # the connection stays: the client's answer, then a new session
    raw.sock.sendall(encode_frame(Composite("end")))
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=0, incoming_window=10,
                                            outgoing_window=10), 1))
    assert raw.frame().performative.kind == "begin"


@pytest.mark.parametrize("target", [None, "a string", Composite("source", address="/queue/q")])
def test_attach_without_a_target_is_invalid_field(broker, target):
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin()
    raw.sock.sendall(encode_frame(Composite("attach", name="s", handle=0, role=False,
                                            target=target)))
    assert raw.frame().performative.kind == "attach"
    detach = raw.frame().performative
    assert detach.kind == "detach" and detach.error.condition == "amqp:invalid-field"


def test_wrong_sasl_password_fails_sasl(broker):
    raw = Raw(broker.amqp_port)
    assert raw.header(SASL_HEADER) == SASL_HEADER
    raw.frame()
    raw.sock.sendall(encode_frame(Composite("sasl_init", mechanism=Symbol("PLAIN"),
                                            initial_response=b"\x00guest\x00nope"),
                                  ftype=SASL_FRAME))
    assert raw.frame().performative.code == 1
    assert raw.frame() is None


def test_amqp_header_without_sasl_is_refused_with_the_sasl_header(broker):
    # RabbitMQ 4 requires SASL on AMQP 1.0: the header it wants, then close
    raw = Raw(broker.amqp_port)
    assert raw.header(AMQP_HEADER) == SASL_HEADER
    assert raw.frame() is None


def test_header_split_byte_by_byte(broker):
    raw = Raw(broker.amqp_port)
    for b in SASL_HEADER:
        raw.sock.sendall(bytes((b,)))
    assert raw._exactly(8) == SASL_HEADER
    assert raw.frame().performative.kind == "sasl_mechanisms"


def test_listed_by_the_api_and_closed_when_its_vhost_goes(broker, unique):
    api = requests.Session()
    api.auth = ("guest", "guest")
    vhost = quote(unique, safe="")
    assert api.put(f"{broker.http_url}/api/vhosts/{vhost}").status_code in (201, 204)
    assert api.put(f"{broker.http_url}/api/permissions/{vhost}/guest",
                   json={"configure": ".*", "write": ".*", "read": ".*"}).ok
    conn = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30, virtual_host=f"vhost:{unique}")
    listed = eventually(lambda: [c for c in api.get(f"{broker.http_url}/api/connections")
                                 .json() if c["vhost"] == unique], "the connection listed")
    assert listed[0]["protocol"] == "AMQP 1-0" and listed[0]["user"] == "guest"
    assert api.delete(f"{broker.http_url}/api/vhosts/{vhost}").status_code == 204
    with pytest.raises(ConnectionClosed) as caught:
        conn.wait(lambda: False, timeout=30)
    assert "amqp:connection:forced" in str(caught.value)


def test_zz_nothing_lost_and_no_traceback(broker, channel):
    assert channel.is_open            # 0-9-1 still served on the shared port
    assert depth(channel, KEEP) == 1
    assert "Traceback" not in broker.log()


def test_message_without_durable_is_transient_as_rabbitmq_4_2_reads_it(amqp1, channel, unique):
    """proton sends an empty header for a message left at its defaults (durable unset): the
    AMQP 1.0 default, transient, as RabbitMQ 4.2 and later read it (4.0 and 4.1 took it as
    durable; RabbitMQ 3 and ActiveMQ as transient); 0-9-1 consumers see no delivery-mode 2.
    With no durable in the header, an ``x-basic-delivery-mode`` annotation of ubyte 2 says
    durable (``mc_amqp``'s fallback), and a header saying ``durable=true`` does."""
    from tests.amqp1.proton_raw import RawMessage, section

    channel.queue_declare(unique)
    sender = amqp1.create_sender(f"/queues/{unique}")
    sender.send(Message(body=b"defaults", inferred=True))
    by_annotation = section(0x72, {symbol("x-basic-delivery-mode"): ubyte(2)}) + \
        section(0x75, b"by annotation")
    sender.send(RawMessage(by_annotation))
    sender.send(Message(body=b"durable", inferred=True, durable=True))
    modes = []
    for body in (b"defaults", b"by annotation", b"durable"):
        _method, props, got = eventually(
            lambda: got_one(channel.basic_get(unique, auto_ack=True)), "a message")
        modes.append((got, props.delivery_mode))
    assert modes == [(b"defaults", None), (b"by annotation", 2), (b"durable", 2)]


def test_a_queue_reply_to_that_is_no_name_is_no_091_reply_to(broker, amqp1, channel, unique):
    # /queues/ with an escape that is no UTF-8: no queue name, as RabbitMQ 4's urldecode
    # fails; the 1.0 receiver still gets the address as sent, nothing is refused
    channel.queue_declare(unique)
    channel.queue_declare(f"{unique}-1.0")
    for queue in (unique, f"{unique}-1.0"):
        amqp1.create_sender(f"/queues/{queue}").send(
            Message(body=b"r", inferred=True, reply_to="/queues/%FF"))
    method, props, _body = eventually(lambda: got_one(channel.basic_get(unique, auto_ack=True)),
                                      "a message")
    assert props.reply_to is None
    receiver = amqp1.create_receiver(f"/queues/{unique}-1.0")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert got.reply_to == "/queues/%FF"
    assert not [line for line in broker.lines if "Traceback" in line]


def test_ids_0_9_1_has_no_property_for_are_headers_and_reach_amqp1_as_sent(amqp1, channel,
                                                                            unique):
    # RabbitMQ 4's mc_amqpl: a binary id (or a string over 255 bytes) is the x-message-id /
    # x-correlation-id header, a ulong its decimal text; a 1.0 receiver gets them as sent
    channel.queue_declare(unique)
    channel.queue_declare(f"{unique}-1.0")
    long_id = "i" * 300
    for queue in (unique, f"{unique}-1.0"):
        sender = amqp1.create_sender(f"/queues/{queue}")
        sender.send(Message(body=b"1", inferred=True, id=ulong(12), correlation_id=b"\x00c"))
        sender.send(Message(body=b"2", inferred=True, id=long_id, correlation_id=ulong(7)))
    first = eventually(lambda: got_one(channel.basic_get(unique, auto_ack=True)), "one")
    second = eventually(lambda: got_one(channel.basic_get(unique, auto_ack=True)), "two")
    assert (first[1].message_id, first[1].correlation_id) == ("12", None)
    assert first[1].headers == {"x-correlation-id": b"\x00c"}
    assert (second[1].message_id, second[1].correlation_id) == (None, "7")
    assert second[1].headers == {"x-message-id": long_id}
    receiver = amqp1.create_receiver(f"/queues/{unique}-1.0", credit=2)
    one, two = receiver.receive(timeout=30), receiver.receive(timeout=30)
    receiver.accept()
    assert (one.id, bytes(one.correlation_id)) == (12, b"\x00c")     # a number, binary
    assert (two.id, two.correlation_id) == (long_id, 7)
    assert "x-message-id" not in (two.annotations or {})
