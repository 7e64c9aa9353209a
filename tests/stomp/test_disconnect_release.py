"""DISCONNECT releases what the session holds before its RECEIPT (``session._on_disconnect``).

ActiveMQ answers DISCONNECT once the connection's removal is done (consumers, temporary
destinations, the client id), and warren's AMQP releases channels and exclusive queues before
``close-ok``: a client that reconnects as soon as it has the RECEIPT must find its client-id
free, its durable subscription inactive (its unacked message back in it) and its exclusive
queue gone. Over Web-STOMP the socket outlives the RECEIPT by the WebSocket close handshake
(the broker waits for the client's close frame), so there the old connection is provably
still open when the new one comes: before the change its CONNECT was refused with "already
connected".
"""

from __future__ import annotations

from tests.websocket.clients import StompWs

NAME = "activemq.subscriptionName"


def _hold_everything(client, unique: str) -> None:
    """A durable subscription with one unacked message and an exclusive named queue."""
    client.send_frame("SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "d",
                                    "ack": "client-individual", NAME: "sub"})
    client.send_frame("SUBSCRIBE", {"destination": f"/exchange/amq.topic/{unique}.x",
                                    "id": "x", "x-queue-name": f"{unique}-own",
                                    "exclusive": "true", "receipt": "subscribed"})
    assert client.frame()[:2] == ("RECEIPT", {"receipt-id": "subscribed"})
    client.send_frame("SEND", {"destination": f"/topic/{unique}", "receipt": "sent"}, b"kept")
    frames = [client.frame(), client.frame()]
    assert sorted(f[0] for f in frames) == ["MESSAGE", "RECEIPT"]


def _reuse_everything(client, unique: str) -> None:
    """The same durable subscription and exclusive queue, at once: the message comes again,
    no ERROR comes before the RECEIPT."""
    client.send_frame("SUBSCRIBE", {"destination": f"/exchange/amq.topic/{unique}.x",
                                    "id": "x", "x-queue-name": f"{unique}-own",
                                    "exclusive": "true"})
    client.send_frame("SUBSCRIBE", {"destination": f"/topic/{unique}", "id": "d",
                                    "ack": "client-individual", NAME: "sub",
                                    "receipt": "again"})
    command, headers, body = client.frame()
    assert command == "RECEIPT", (command, headers, body)
    command, headers, body = client.frame()
    assert (command, body) == ("MESSAGE", b"kept"), (command, headers, body)
    assert headers.get("redelivered") == "true"


def test_web_stomp_reconnect_before_the_close_handshake_reuses_all(broker, unique):
    first = _client_with_id(broker, unique)
    _hold_everything(first, unique)
    first.send_frame("DISCONNECT", {"receipt": "bye"})
    assert first.frame()[:2] == ("RECEIPT", {"receipt-id": "bye"})
    # the broker's close frame is not answered yet: the first socket is still open
    second = _client_with_id(broker, unique)
    _reuse_everything(second, unique)
    first.close()
    second.close()
    assert "Traceback" not in broker.log()


def test_tcp_reconnect_at_once_reuses_all(broker, unique):
    """The same over TCP (the socket closes right after the RECEIPT is written there)."""
    from tests.stomp.conftest import raw_connect
    first = _TcpStomp(raw_connect(broker.stomp_port), unique)
    _hold_everything(first, unique)
    first.send_frame("DISCONNECT", {"receipt": "bye"})
    assert first.frame()[:2] == ("RECEIPT", {"receipt-id": "bye"})
    second = _TcpStomp(raw_connect(broker.stomp_port), unique)
    _reuse_everything(second, unique)
    first.sock.close()
    second.sock.close()
    assert "Traceback" not in broker.log()


def _client_with_id(broker, unique: str) -> StompWs:
    client = StompWs(broker.web_stomp_port, connect=False)
    client.send_frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest",
                                  "passcode": "guest", "client-id": unique})
    command, headers, body = client.frame()
    assert command == "CONNECTED", (command, headers, body)
    return client


class _TcpStomp:
    """STOMP 1.2 frames over a plain socket, read the way ``StompWs`` reads them."""

    def __init__(self, sock, client_id: str) -> None:
        self.sock = sock
        self.buffer = b""
        self.send_frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest",
                                    "passcode": "guest", "client-id": client_id})
        command, headers, body = self.frame()
        assert command == "CONNECTED", (command, headers, body)

    def send_frame(self, command: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.sock.sendall(StompWs.encode(command, headers, body))

    def frame(self) -> tuple[str, dict[str, str], bytes]:
        while b"\x00" not in self.buffer.lstrip(b"\r\n"):
            data = self.sock.recv(65536)
            assert data, "the broker closed the connection"
            self.buffer += data
        self.buffer = self.buffer.lstrip(b"\r\n")
        raw, _, self.buffer = self.buffer.partition(b"\x00")
        return StompWs.decode(raw)
