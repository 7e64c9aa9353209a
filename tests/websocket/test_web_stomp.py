"""Web-STOMP: STOMP over WebSocket at ws://host:PORT/ws, with pika on the AMQP side.

The subprotocol choice, frames packed into and split across messages (text and binary),
heart-beats as WebSocket messages, and the TCP listener's authentication, permissions and
destinations, all against a real broker.
"""

from __future__ import annotations

import pika
import pytest
import requests

from tests.polling import eventually
from tests.websocket.clients import (StompWs, close_code, connect_ws, raw_request,
                                      upgrade_request)


def amqp(broker):
    return pika.BlockingConnection(pika.URLParameters(broker.amqp_url))


@pytest.mark.parametrize("offered, chosen", [
    (["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),   # the highest, as RabbitMQ
    (["v11.stomp"], "v11.stomp"),
    (["v10.stomp", "mqtt"], "v10.stomp"),
    ([], None),
])
def test_subprotocol_choice(broker, offered, chosen):
    client = StompWs(broker.web_stomp_port, subprotocols=offered)
    assert client.ws.getsubprotocol() == chosen
    assert client.connected[0] == "CONNECTED"
    client.close()


def test_no_stomp_subprotocol_offered_is_served_without_one(broker):
    """As RabbitMQ: the upgrade succeeds and confirms no subprotocol (a browser would then
    give up, the RFC's client rule; a client that does not care goes on)."""
    status, headers, sock = raw_request(broker.web_stomp_port,
                                        upgrade_request(protocols="stomp, chat"))
    assert status == 101 and "sec-websocket-protocol" not in headers
    sock.close()


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_send_over_websocket_reaches_pika(broker, unique, version):
    conn = amqp(broker)
    ch = conn.channel()
    ch.queue_declare(unique)
    client = StompWs(broker.web_stomp_port, version=version)
    assert client.connected[1]["version"] == version
    client.send_frame("SEND", {"destination": f"/queue/{unique}", "receipt": "r1",
                               "content-type": "text/plain"}, "héllo".encode())
    assert client.frame()[:2] == ("RECEIPT", {"receipt-id": "r1"})
    method, props, body = ch.basic_get(unique, auto_ack=True)
    assert body == "héllo".encode() and props.content_type == "text/plain"
    client.close()
    conn.close()


def test_pika_publish_reaches_websocket_subscriber(broker, unique):
    client = StompWs(broker.web_stomp_port)
    client.send_frame("SUBSCRIBE", {"id": "s1", "destination": f"/topic/{unique}.k",
                                    "receipt": "sub"})
    assert client.frame()[0] == "RECEIPT"
    conn = amqp(broker)
    conn.channel().basic_publish("amq.topic", f"{unique}.k", b"from pika",
                                 pika.BasicProperties(headers={"x": "1"}))
    command, headers, body = client.frame()
    assert (command, body) == ("MESSAGE", b"from pika")
    assert headers["destination"] == f"/topic/{unique}.k" and headers["x"] == "1"
    conn.close()
    client.close()


def test_binary_body_goes_out_in_a_binary_message(broker, unique):
    """A body that is not UTF-8 cannot ride in a text message: the broker sends binary."""
    client = StompWs(broker.web_stomp_port)
    client.send_frame("SUBSCRIBE", {"id": "s1", "destination": f"/queue/{unique}",
                                    "receipt": "sub"})
    assert client.frame()[0] == "RECEIPT"
    conn = amqp(broker)
    conn.channel().basic_publish("", unique, b"\xff\xfe\x00\x01")
    opcode, data = client.ws.recv_data()
    assert opcode == 2       # binary
    assert data.startswith(b"MESSAGE\n") and data.endswith(b"\xff\xfe\x00\x01\x00")
    conn.close()
    client.close()


def test_frames_packed_into_one_message_and_split_across_messages(broker, unique):
    client = StompWs(broker.web_stomp_port)
    sub = StompWs.encode("SUBSCRIBE", {"id": "s1", "destination": f"/queue/{unique}"})
    send = StompWs.encode("SEND", {"destination": f"/queue/{unique}"}, b"packed")
    receipt = StompWs.encode("SEND", {"destination": f"/queue/{unique}", "receipt": "r"},
                             b"split in three")
    client.send(sub + send)                              # two frames in one text message
    client.send(receipt[:10], binary=True)               # one frame over three messages,
    client.send(receipt[10:30])                          # binary and text mixed
    client.send(receipt[30:], binary=True)
    seen = [client.frame() for _ in range(3)]
    assert sorted((c, b) for c, _h, b in seen) == [
        ("MESSAGE", b"packed"), ("MESSAGE", b"split in three"), ("RECEIPT", b"")]
    client.close()


def test_heartbeats_flow_as_websocket_messages(broker):
    client = StompWs(broker.web_stomp_port, heart_beat="0,200")
    _cmd, headers, _ = client.connected
    send_ms, _expect = (int(x) for x in headers["heart-beat"].split(","))
    assert send_ms >= 200
    for _ in range(3):                  # the broker's heart-beats: bare EOL messages
        assert client.ws.recv() == "\n"
    client.ws.send("\n")                # and a client's, taken as STOMP takes them
    client.send_frame("DISCONNECT", {"receipt": "bye"})
    assert client.frame()[:2] == ("RECEIPT", {"receipt-id": "bye"})
    client.close()


def test_bad_login_gets_the_stomp_error_then_close_1000(broker):
    client = StompWs(broker.web_stomp_port, passcode="wrong")
    command, headers, _body = client.connected
    assert (command, headers["message"]) == ("ERROR", "Bad CONNECT")   # as over TCP
    assert close_code(client.ws) == 1000
    assert "Traceback" not in broker.log()


def test_permissions_are_those_of_the_tcp_listener(broker, unique):
    api = requests.Session()
    api.auth = ("guest", "guest")
    user = f"u{unique[-8:]}"
    assert api.put(f"{broker.http_url}/api/users/{user}",
                   json={"password": "pw", "tags": ""}, timeout=30).status_code in (201, 204)
    assert api.put(f"{broker.http_url}/api/permissions/%2F/{user}",
                   json={"configure": "", "write": "", "read": ".*"},
                   timeout=30).status_code in (201, 204)
    conn = amqp(broker)
    conn.channel().queue_declare(unique)
    client = StompWs(broker.web_stomp_port, login=user, passcode="pw")
    assert client.connected[0] == "CONNECTED"
    client.send_frame("SEND", {"destination": f"/queue/{unique}", "receipt": "r"}, b"no")
    command, headers, _ = client.frame()
    assert command == "ERROR" and headers["message"] == "access_refused"
    assert close_code(client.ws) == 1000
    assert conn.channel().queue_declare(unique, passive=True).method.message_count == 0
    conn.close()


def test_connections_are_listed_and_the_overview_names_the_listener(broker):
    client = StompWs(broker.web_stomp_port)
    api = requests.Session()
    api.auth = ("guest", "guest")
    overview = api.get(f"{broker.http_url}/api/overview", timeout=30).json()
    assert {"node": overview["node"], "protocol": "http/web-stomp", "ip_address": "127.0.0.1",
            "port": broker.web_stomp_port} in overview["listeners"]
    assert ("http/web-mqtt", broker.web_mqtt_port) in {
        (item["protocol"], item["port"]) for item in overview["listeners"]}

    def listed():
        return [c for c in api.get(f"{broker.http_url}/api/connections", timeout=30).json()
                if c["peer_port"] == client.ws.sock.getsockname()[1]]
    found = eventually(listed, "the Web-STOMP connection in /api/connections")
    assert found[0]["protocol"] == "Web STOMP 1.2"      # as RabbitMQ names it
    client.close()
    assert eventually(lambda: not listed(), "the connection gone after its close")


def test_log_line_names_each_websocket_listener(broker):
    broker.wait_for_line(f"Web-STOMP listening on 127.0.0.1:{broker.web_stomp_port}")
    broker.wait_for_line(f"Web-MQTT listening on 127.0.0.1:{broker.web_mqtt_port}")


def test_a_client_close_is_answered_with_its_code(broker):
    ws = connect_ws(broker.web_stomp_port, subprotocols=["v12.stomp"])
    ws.send_close(status=1001)
    assert close_code(ws) == 1001


@pytest.mark.parametrize("alias, protocol", [("web-stomp", "http/web-stomp"),
                                             ("WebMQTT", "http/web-mqtt"),
                                             ("web_stomp", "http/web-stomp")])
def test_protocol_listener_health_check_knows_rabbitmqs_aliases(broker, alias, protocol):
    r = requests.get(f"{broker.http_url}/api/health/checks/protocol-listener/{alias}",
                     auth=("guest", "guest"), timeout=30)
    assert (r.status_code, r.json()) == (200, {"status": "ok", "protocol": protocol})
