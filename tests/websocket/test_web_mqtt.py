"""Web-MQTT: MQTT 3.1.1 and 5 over WebSocket at ws://host:PORT/ws (subprotocol ``mqtt``).

paho-mqtt's websockets transport against pika both ways, and a raw WebSocket client that
splits one packet across messages and packs several packets into one.
"""

from __future__ import annotations

import pika
import pytest
import requests

from tests.mqtt.helpers import V5, V311, Client, cid
from tests.websocket.clients import TIMEOUT, close_code, connect_ws
from warren.mqtt.codec import (ConnAck, Connect, MqttParser, Publish, SubAck, Subscribe,
                               Subscription, encode)


@pytest.mark.parametrize("level", [V311, V5], ids=["3.1.1", "5"])
def test_paho_over_websocket_and_pika_both_ways(broker, level):
    unique = cid("w")        # no dots: MQTT maps them to slashes
    topic = f"{unique}/t"
    client = Client(broker.web_mqtt_port, protocol=level, websocket=True)
    client.subscribe(topic, 1)
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique)
    ch.queue_bind(unique, "amq.topic", f"{unique}.t")
    ch.basic_publish("amq.topic", f"{unique}.t", b"from pika")
    got = client.get()
    assert (got.topic, got.payload) == (topic, b"from pika")
    client.publish(topic, b"from web-mqtt", qos=1)
    payloads = set()
    for _ in range(2):   # pika's own message and the MQTT one, both on the bound queue
        method = None
        while method is None:
            method, _props, body = ch.basic_get(unique, auto_ack=True)
            if method is None:
                conn.process_data_events(0.05)
        payloads.add(body)
    assert payloads == {b"from pika", b"from web-mqtt"}
    assert client.get().payload == b"from web-mqtt"    # its own subscription sees it too
    api = requests.Session()
    api.auth = ("guest", "guest")
    listed = [c["protocol"] for c in api.get(f"{broker.http_url}/api/connections",
                                             timeout=30).json()
              if c["client_properties"].get("client_id") == client.client_id]
    assert listed == ["Web MQTT 3.1.1" if level == V311 else "Web MQTT 5.0"]   # as RabbitMQ
    client.disconnect()
    conn.close()


def test_tcp_and_websocket_clients_share_one_session_registry(broker):
    """The same client id over TCP takes the session over from WebSocket, as between two TCP
    connections: one listener factory behind both."""
    client_id = cid("shared")
    web = Client(broker.web_mqtt_port, client_id=client_id, websocket=True)
    tcp = Client(broker.mqtt_port, client_id=client_id)
    assert web.disconnected.wait(TIMEOUT)
    tcp.disconnect()


class RawWs:
    """MQTT packets through warren's codec, over a WebSocket, message boundaries our choice."""

    def __init__(self, port: int, level: int = 4) -> None:
        self.ws = connect_ws(port, subprotocols=["mqtt"])
        self.level = level
        self.parser = MqttParser(protocol_level=level)
        self.pending: list = []

    def packet(self):
        while not self.pending:
            opcode, data = self.ws.recv_data()
            assert opcode == 2, "MQTT must come in binary messages"
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)


@pytest.mark.parametrize("level", [4, 5])
def test_packets_split_across_and_packed_into_messages(broker, level):
    unique = cid("w")
    raw = RawWs(broker.web_mqtt_port, level)
    assert raw.ws.getsubprotocol() == "mqtt"
    connect = encode(Connect(protocol_level=level, client_id=cid(), username="guest",
                             password=b"guest"), level)
    for i in range(0, len(connect), 3):             # CONNECT over many small messages
        raw.ws.send_binary(connect[i:i + 3])
    assert isinstance(ack := raw.packet(), ConnAck) and ack.reason_code == 0
    topic = f"{unique}/p"
    packed = (encode(Subscribe(1, (Subscription(topic, 1),)), level)
              + encode(Publish(topic, b"one", qos=1, packet_id=2), level)
              + encode(Publish(topic, b"two"), level))
    raw.ws.send_binary(packed)                       # three packets in one message
    seen = [raw.packet() for _ in range(4)]          # SUBACK, PUBACK, two deliveries
    assert any(isinstance(p, SubAck) for p in seen)
    assert sorted(p.payload for p in seen if isinstance(p, Publish)) == [b"one", b"two"]
    raw.ws.close()


def test_listener_log_line(broker):
    broker.wait_for_line(f"Web-MQTT listening on 127.0.0.1:{broker.web_mqtt_port}")


@pytest.mark.parametrize("level, connack", [(4, b"\x20\x02\x00\x04"),       # bad user or password
                                            (5, b"\x20\x03\x00\x86\x00")])
def test_bad_password_gets_the_refusing_connack_then_close_1002(broker, level, connack):
    """The TCP listener's authentication; then, as RabbitMQ's Web-MQTT closes a rejected
    CONNECT, 'protocol error'."""
    ws = connect_ws(broker.web_mqtt_port, subprotocols=["mqtt"])
    ws.send_binary(encode(Connect(protocol_level=level, client_id=cid(), username="guest",
                                  password=b"wrong"), level))
    assert ws.recv_data() == (2, connack)
    assert close_code(ws) == 1002
