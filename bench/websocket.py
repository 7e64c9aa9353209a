"""STOMP and MQTT over WebSocket against the same over TCP, on warren and on RabbitMQ's
Web-STOMP / Web-MQTT plugins, in one run.

    python -m bench.websocket [--brokers warren,rabbitmq] [--messages 20000] [--rounds 3]

One subscriber and one publisher per measurement, both in this process: the publisher sends
``--messages`` messages of ``--size`` bytes (STOMP SEND to a queue, MQTT QoS 0 PUBLISH to a
topic), ``--batch`` per socket write (over WebSocket: per message, as a browser client
batching its frames would), and the figure is messages per second from the first send to the
last delivery. The clients are the same code for both transports and both brokers (WebSocket
through wsproto, the codec warren itself uses), so the ratios compare the brokers' cost of the
WebSocket layer; the absolute rates are bounded by this Python client. Medians of
``--rounds``; speed is printed, never asserted.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Message,
                            RejectConnection, Request, TextMessage)

from bench.brokers import HOST, RabbitMQ, Warren

TIMEOUT = 60.0


# ---------------------------------------------------------------------------------- brokers
class WarrenWeb(Warren):
    protocols = frozenset({"amqp", "stomp", "mqtt", "web-stomp", "web-mqtt"})

    def command(self) -> list[str]:
        # later flags win: these replace the "--web-*-port 0" of the plain bench broker
        return [*super().command(), "--web-stomp-port", str(self.ports["web-stomp"]),
                "--web-mqtt-port", str(self.ports["web-mqtt"])]


class RabbitMQWeb(RabbitMQ):
    """A private RabbitMQ node with the rabbitmq_web_stomp and rabbitmq_web_mqtt plugins."""

    protocols = frozenset({"amqp", "stomp", "mqtt", "web-stomp", "web-mqtt"})

    def prepare(self) -> None:
        super().prepare()
        marker = self.workdir / "web-plugins-enabled"
        if marker.exists():
            return
        with open(self.workdir / "rabbitmq.conf", "a") as conf:
            conf.write(f"web_stomp.tcp.ip = {HOST}\nweb_stomp.tcp.port = "
                       f"{self.ports['web-stomp']}\nweb_mqtt.tcp.ip = {HOST}\n"
                       f"web_mqtt.tcp.port = {self.ports['web-mqtt']}\n")
        import subprocess
        plugins = str(Path(self.server).with_name("rabbitmq-plugins"))
        subprocess.run([plugins, "enable", "--offline", "rabbitmq_web_stomp",
                        "rabbitmq_web_mqtt"], env=self.environment(), cwd=self.workdir,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                       timeout=120)
        marker.write_text("")


# ---------------------------------------------------------------------------------- streams
class TcpStream:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("closed by the broker")
        return data

    def close(self) -> None:
        self.sock.close()


class WsStream(TcpStream):
    """A WebSocket client over a socket, driven through wsproto."""

    def __init__(self, port: int, subprotocol: str) -> None:
        super().__init__(port)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{HOST}:{port}", target="/ws",
                                               subprotocols=[subprotocol])))
        self.pending: list[bytes] = []
        while True:
            self.ws.receive_data(TcpStream.recv(self))
            events = list(self.ws.events())
            if any(isinstance(e, RejectConnection) for e in events):
                raise ConnectionError("WebSocket upgrade refused")
            if any(isinstance(e, AcceptConnection) for e in events):
                self._collect(events)
                return

    def _collect(self, events) -> None:
        for event in events:
            if isinstance(event, TextMessage):
                self.pending.append(event.data.encode())
            elif isinstance(event, Message):
                self.pending.append(bytes(event.data))
            elif isinstance(event, CloseConnection):
                raise ConnectionError(f"closed by the broker ({event.code})")

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def recv(self) -> bytes:
        while not self.pending:
            self.ws.receive_data(TcpStream.recv(self))
            self._collect(self.ws.events())
        data = b"".join(self.pending)
        self.pending = []
        return data


# ---------------------------------------------------------------------------------- protocols
def stomp_frame(command: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = "\n".join([command, *(f"{k}:{v}" for k, v in headers.items())])
    return head.encode() + b"\n\n" + body + b"\x00"


class Stomp:
    subprotocol = "v12.stomp"

    @staticmethod
    def connect(stream) -> None:
        stream.send(stomp_frame("CONNECT", {"accept-version": "1.2", "host": "/",
                                            "login": "guest", "passcode": "guest"}))
        Stomp.await_marker(stream, b"CONNECTED")

    @staticmethod
    def await_marker(stream, marker: bytes) -> None:
        data = b""
        while marker not in data:
            data += stream.recv()

    @staticmethod
    def subscribe(stream, name: str) -> None:
        stream.send(stomp_frame("SUBSCRIBE", {"id": "1", "destination": f"/queue/{name}",
                                              "receipt": "sub"}))
        Stomp.await_marker(stream, b"RECEIPT")

    @staticmethod
    def message(name: str, body: bytes) -> bytes:
        return stomp_frame("SEND", {"destination": f"/queue/{name}"}, body)

    @staticmethod
    def counter():
        def count(data: bytes) -> int:
            return data.count(b"\x00")   # bodies are b"x" * size: one NUL per frame
        return count


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


class Mqtt:
    subprotocol = "mqtt"

    @staticmethod
    def connect(stream) -> None:
        body = (_string("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
                + _string(f"bench-{time.monotonic_ns()}") + _string("guest") + _string("guest"))
        stream.send(bytes([0x10]) + _varint(len(body)) + body)
        Stomp.await_marker(stream, b"\x20\x02")               # CONNACK

    @staticmethod
    def subscribe(stream, name: str) -> None:
        body = (1).to_bytes(2, "big") + _string(f"{name}/t") + bytes([0])
        stream.send(bytes([0x82]) + _varint(len(body)) + body)
        Stomp.await_marker(stream, b"\x90\x03")               # SUBACK

    @staticmethod
    def message(name: str, body: bytes) -> bytes:
        payload = _string(f"{name}/t") + body
        return bytes([0x30]) + _varint(len(payload)) + payload

    @staticmethod
    def counter():
        """Counts PUBLISH packets in a byte stream cut anywhere."""
        state = {"buf": b""}

        def count(data: bytes) -> int:
            buf = state["buf"] + data
            n, i = 0, 0
            while True:
                if len(buf) - i < 2:
                    break
                length, shift, j = 0, 0, i + 1
                while j < len(buf):
                    byte = buf[j]
                    length += (byte & 0x7F) << shift
                    shift += 7
                    j += 1
                    if not byte & 0x80:
                        break
                else:
                    break
                if len(buf) - j < length:
                    break
                if buf[i] >> 4 == 3:
                    n += 1
                i = j + length
            state["buf"] = buf[i:]
            return n
        return count


# ---------------------------------------------------------------------------------- one run
def measure(protocol, open_stream, messages: int, size: int, batch: int) -> float:
    name = f"wsbench{time.monotonic_ns()}"
    sub, pub = open_stream(), open_stream()
    protocol.connect(sub)
    protocol.subscribe(sub, name)
    protocol.connect(pub)
    count = protocol.counter()
    done = threading.Event()
    received = [0]

    def read() -> None:
        try:
            while received[0] < messages:
                received[0] += count(sub.recv())
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    one = protocol.message(name, b"x" * size)
    began = time.monotonic()
    for start in range(0, messages, batch):
        pub.send(one * min(batch, messages - start))
    if not done.wait(TIMEOUT) or received[0] < messages:
        raise RuntimeError(f"only {received[0]} of {messages} messages arrived")
    elapsed = time.monotonic() - began
    for stream in (sub, pub):
        stream.close()
    return messages / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.websocket", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default="warren,rabbitmq")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rabbitmq-server", default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    makers = {"warren": lambda: WarrenWeb(root / "warren", command=Warren.default_command()),
              "rabbitmq": lambda: RabbitMQWeb(root / "rabbitmq", program=args.rabbitmq_server)}
    results: dict[tuple[str, str, str], float] = {}
    for broker_name in args.brokers.split(","):
        broker = makers[broker_name]()
        broker.start()
        try:
            for proto_name, protocol in (("STOMP", Stomp), ("MQTT", Mqtt)):
                tcp_port = broker.ports[proto_name.lower()]
                web_port = broker.ports["web-" + proto_name.lower()]
                for transport, opener in (
                        ("tcp", lambda p=tcp_port: TcpStream(p)),
                        ("ws", lambda p=web_port, s=protocol.subprotocol: WsStream(p, s))):
                    rates = [measure(protocol, opener, args.messages, args.size, args.batch)
                             for _ in range(args.rounds)]
                    results[(broker_name, proto_name, transport)] = statistics.median(rates)
                    print(f"{broker_name} {proto_name} {transport}: "
                          f"{results[(broker_name, proto_name, transport)]:,.0f} msg/s",
                          file=sys.stderr)
        finally:
            broker.stop()
    print("| broker | protocol | TCP msg/s | WebSocket msg/s | WebSocket / TCP |")
    print("|---|---|---:|---:|---:|")
    for broker_name in args.brokers.split(","):
        for proto_name in ("STOMP", "MQTT"):
            tcp = results[(broker_name, proto_name, "tcp")]
            ws = results[(broker_name, proto_name, "ws")]
            print(f"| {broker_name} | {proto_name} | {tcp:,.0f} | {ws:,.0f} | {ws / tcp:.2f} |")
    if "warren" in args.brokers and "rabbitmq" in args.brokers:
        print()
        print("| protocol over WebSocket | warren / rabbitmq |")
        print("|---|---:|")
        for proto_name in ("STOMP", "MQTT"):
            ratio = results[("warren", proto_name, "ws")] / results[("rabbitmq", proto_name,
                                                                       "ws")]
            print(f"| {proto_name} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
