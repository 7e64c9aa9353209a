"""Bad input on the WebSocket ports: the HTTP status or close code RFC 6455 prescribes, the
protocol's error where one applies, nothing stored lost, other clients unaffected, and no
traceback in the broker's log.

Every test ends with ``healthy``: a Web-STOMP client connected before it still gets a
receipt, and the log has no traceback.
"""

from __future__ import annotations

import socket
import struct

import pika
import pytest
import websocket

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import cid
from tests.websocket.clients import (StompWs, close_code, connect_ws, peer_closed,
                                     raw_request, upgrade_request)
from warren.mqtt.codec import Connect, Publish, encode

LIMIT = 65536


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Small message limits and a short handshake timeout, so both can be crossed quickly."""
    proc = BrokerProcess(tmp_path_factory.mktemp("wsbad"), env={
        "WARREN_STOMP_MAX_FRAME_SIZE": str(LIMIT), "WARREN_MQTT_MAX_PACKET_SIZE": str(LIMIT),
        "WARREN_HANDSHAKE_TIMEOUT": "3"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def bystander(broker):
    client = StompWs(broker.web_stomp_port)
    yield client
    client.close()


@pytest.fixture
def healthy(broker, bystander):
    yield
    bystander.send_frame("SEND", {"destination": "/queue/bystander", "receipt": "still"},
                         b"here")
    assert bystander.frame()[:2] == ("RECEIPT", {"receipt-id": "still"})
    assert "Traceback" not in broker.log()


def ports(broker):
    return {"web-stomp": broker.web_stomp_port, "web-mqtt": broker.web_mqtt_port}


# ------------------------------------------------------------------------------ HTTP level
@pytest.mark.parametrize("which", ["web-stomp", "web-mqtt"])
def test_plain_http_gets_426_and_the_connection_closes(broker, healthy, which):
    """RabbitMQ's plugins answer 426 Upgrade Required too (checked against 3.10.8)."""
    status, headers, sock = raw_request(ports(broker)[which],
                                        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 426 and headers["upgrade"] == "websocket"
    assert closes(sock)
    sock.close()


@pytest.mark.parametrize("which", ["web-stomp", "web-mqtt"])
def test_other_path_is_404(broker, healthy, which):
    status, _h, sock = raw_request(ports(broker)[which],
                                   upgrade_request("/stomp", protocols="v12.stomp, mqtt"))
    assert status == 404
    assert closes(sock)
    sock.close()


def test_unknown_websocket_version_is_426_naming_13(broker, healthy):
    status, headers, sock = raw_request(broker.web_stomp_port, upgrade_request(version="12"))
    assert status == 426 and headers["sec-websocket-version"] == "13"
    sock.close()


def test_upgrade_without_a_key_is_400(broker, healthy):
    status, _h, sock = raw_request(broker.web_stomp_port, upgrade_request(key=None))
    assert status == 400
    assert closes(sock)
    sock.close()


def test_post_is_426(broker, healthy):
    request = upgrade_request(protocols="mqtt").replace(b"GET ", b"POST ", 1)
    status, _h, sock = raw_request(broker.web_mqtt_port, request)
    assert status == 426                                # as RabbitMQ 3.10.8
    sock.close()


def test_garbage_instead_of_http_closes_the_connection(broker, healthy):
    status, _h, sock = raw_request(broker.web_stomp_port, b"\x10\x20CONNECT\x00\r\n\r\n")
    assert status == 400
    assert closes(sock)
    sock.close()


def test_endless_request_headers_are_cut_off_with_400(broker, healthy):
    """A request head still unfinished past h11's 16 KiB is refused, not buffered on."""
    request = upgrade_request()[:-2] + b"X-Big: " + b"a" * 17_000      # no end in sight
    status, _h, sock = raw_request(broker.web_stomp_port, request)
    assert status == 400
    assert closes(sock)
    sock.close()


@pytest.mark.parametrize("offered", [None, "v12.stomp", "mqttv3.1"])
def test_web_mqtt_without_the_mqtt_subprotocol_is_400(broker, healthy, offered):
    """MQTT requires 'mqtt' among the offered subprotocols; RabbitMQ answers 400 too."""
    status, _h, sock = raw_request(broker.web_mqtt_port, upgrade_request(protocols=offered))
    assert status == 400
    assert closes(sock)
    sock.close()


def test_no_handshake_in_time_closes_the_socket(broker, healthy):
    sock = socket.create_connection(("127.0.0.1", broker.web_stomp_port))
    assert closes(sock)                  # closed by the broker, unanswered
    sock.close()


def closes(sock: socket.socket) -> bool:
    """Read until the broker closes the connection (True) or 30 s pass without it (False)."""
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return True


# ------------------------------------------------------------------------------ messages
def test_text_message_to_web_mqtt_is_closed_1003(broker, healthy):
    ws = connect_ws(broker.web_mqtt_port, subprotocols=["mqtt"])
    connect = encode(Connect(client_id=cid(), username="guest", password=b"guest"), 4)
    ws.send(connect.decode("latin-1"))        # the right bytes, in a text message
    assert close_code(ws) == 1003


def test_oversize_stomp_message_is_closed_1009_and_nothing_is_stored(broker, healthy, unique):
    client = StompWs(broker.web_stomp_port)
    assert client.connected[0] == "CONNECTED"
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique, durable=True)
    frame = StompWs.encode("SEND", {"destination": f"/queue/{unique}", "persistent": "true"},
                           b"x" * (LIMIT + 1))
    client.send(frame, binary=True)
    assert close_code(client.ws) == 1009
    assert ch.queue_declare(unique, passive=True).method.message_count == 0
    conn.close()


def test_oversize_mqtt_message_is_closed_1009(broker, healthy):
    """Packets each under the packet limit, packed into one message over it."""
    ws = connect_ws(broker.web_mqtt_port, subprotocols=["mqtt"])
    ws.send_binary(encode(Connect(client_id=cid(), username="guest", password=b"guest"), 4))
    ws.recv_data()                                   # CONNACK
    packet = encode(Publish(cid("nobody") + "/t", b"x" * 1000), 4)
    ws.send_binary(packet * (LIMIT // len(packet) + 1))
    assert close_code(ws) == 1009


def test_close_in_the_middle_of_a_stomp_frame(broker, healthy, unique):
    """The client's close is answered (1000); the half frame is dropped, nothing published."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique)
    client = StompWs(broker.web_stomp_port)
    client.send(f"SEND\ndestination:/queue/{unique}\n\nhalf a bo".encode())
    client.ws.send_close(status=1000)
    assert close_code(client.ws) == 1000
    assert peer_closed(client.ws)
    # a whole frame from another client after it is the only message
    other = StompWs(broker.web_stomp_port)
    other.send_frame("SEND", {"destination": f"/queue/{unique}", "receipt": "r"}, b"whole")
    assert other.frame()[0] == "RECEIPT"
    assert ch.queue_declare(unique, passive=True).method.message_count == 1
    assert ch.basic_get(unique, auto_ack=True)[2] == b"whole"
    other.close()
    conn.close()


def test_a_malformed_stomp_frame_gets_error_then_close_1000(broker, healthy):
    client = StompWs(broker.web_stomp_port)
    client.send(b"NOT-A-COMMAND\n\n\x00")
    command, headers, _ = client.frame()
    assert command == "ERROR"
    assert close_code(client.ws) == 1000


def test_unmasked_client_frame_is_closed_1002(broker, healthy):
    status, _h, sock = raw_request(broker.web_stomp_port, upgrade_request(protocols="v12.stomp"))
    assert status == 101
    sock.sendall(b"\x81\x05hello")                   # a client MUST mask (RFC 6455 5.1)
    frame = sock.recv(65536)
    assert frame[0] == 0x88 and struct.unpack("!H", frame[2:4])[0] == 1002
    sock.close()


def test_invalid_utf8_in_a_text_message_is_closed_1007(broker, healthy):
    ws = connect_ws(broker.web_stomp_port, subprotocols=["v12.stomp"])
    ws.send(b"CONNECT\n\n\xff\xfe\x00", opcode=websocket.ABNF.OPCODE_TEXT)
    assert close_code(ws) == 1007


def _web_mqtt(broker, level: int):
    ws = connect_ws(broker.web_mqtt_port, subprotocols=["mqtt"])
    ws.send_binary(encode(Connect(protocol_level=level, client_id=cid(), username="guest",
                                  password=b"guest"), level))
    opcode, connack = ws.recv_data()
    assert opcode == 2 and connack[0] == 0x20
    return ws


def _until_close(ws) -> tuple[list[bytes], int]:
    """The binary messages the broker sends before its close frame, and the close code."""
    seen = []
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return seen, struct.unpack("!H", frame.data[:2])[0]
        seen.append(frame.data)


def test_a_malformed_mqtt_packet_closes_1002_at_3_1_1(broker, healthy):
    """As RabbitMQ's Web-MQTT: a packet the broker refuses closes with 'protocol error'."""
    ws = _web_mqtt(broker, 4)
    ws.send_binary(b"\xf0\x00")                       # AUTH does not exist at 3.1.1
    assert _until_close(ws) == ([], 1002)


def test_a_malformed_mqtt_packet_at_5_gets_disconnect_then_1002(broker, healthy):
    ws = _web_mqtt(broker, 5)
    ws.send_binary(b"\x36\x00")                       # PUBLISH with QoS 3
    seen, code = _until_close(ws)
    assert code == 1002
    assert [m[0] for m in seen] == [0xE0]             # DISCONNECT, with its reason code


def test_a_clean_mqtt_disconnect_closes_1000(broker, healthy):
    ws = _web_mqtt(broker, 4)
    ws.send_binary(b"\xe0\x00")
    assert _until_close(ws) == ([], 1000)
