"""WebSocket clients for the Web-STOMP and Web-MQTT tests (websocket-client, a real client).

``StompWs`` reads STOMP frames out of WebSocket messages however the broker packs them (a
message may hold several frames; heart-beats are bare end-of-lines); ``close_code`` reads
until the broker's close frame and returns its status code. Every read has a timeout: a test
waits for what the broker sends, never sleeps.
"""

from __future__ import annotations

import socket
import ssl
import struct

import websocket

from tests.broker_process import BrokerProcess

TIMEOUT = 10.0


def tls_websocket_broker(data_dir, pki: dict[str, str]) -> BrokerProcess:
    """A broker whose TLS listeners are its WebSocket ones (wss://): the certificate of
    ``pki`` (tests/tls/pki.py), the other TLS ports on free ports. Use it with ``with``."""
    return BrokerProcess(data_dir, extra_args=[
        "--tls-cert", pki["cert"], "--tls-key", pki["key"], "--amqps-port", "0",
        "--stomps-port", "0", "--mqtts-port", "0", "--https-port", "0"])


def ws_url(port: int, *, secure: bool = False, host: str = "127.0.0.1") -> str:
    return f"{'wss' if secure else 'ws'}://{host}:{port}/ws"


def connect_ws(port: int, *, subprotocols: list[str] | None = None,
               tls: ssl.SSLContext | None = None) -> websocket.WebSocket:
    options = {"context": tls} if tls is not None else None
    return websocket.create_connection(ws_url(port, secure=tls is not None,
                                              host="localhost" if tls else "127.0.0.1"),
                                       subprotocols=subprotocols, timeout=TIMEOUT,
                                       sslopt=options)


def close_code(ws: websocket.WebSocket) -> int:
    """The status code of the close frame the broker sends next (data before it skipped)."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005


def peer_closed(ws: websocket.WebSocket) -> bool:
    """True once the broker closed the TCP connection under this client."""
    sock = ws.sock
    while True:
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


class StompWs:
    """A STOMP client over one WebSocket, reading whole frames as ``(command, headers, body)``."""

    def __init__(self, port: int, *, version: str = "1.2", login: str = "guest",
                 passcode: str = "guest", subprotocols: list[str] | None = None,
                 heart_beat: str = "0,0", tls: ssl.SSLContext | None = None,
                 connect: bool = True) -> None:
        offered = ["v12.stomp", "v11.stomp", "v10.stomp"] if subprotocols is None \
            else subprotocols
        self.ws = connect_ws(port, subprotocols=offered, tls=tls)
        self.buffer = b""
        self.heartbeats = 0
        if connect:
            self.send_frame("CONNECT", {"accept-version": version, "host": "/",
                                        "login": login, "passcode": passcode,
                                        "heart-beat": heart_beat})
            self.connected = self.frame()

    @staticmethod
    def encode(command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
        lines = [command] + [f"{k}:{v}" for k, v in (headers or {}).items()]
        return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"

    @staticmethod
    def decode(raw: bytes) -> tuple[str, dict[str, str], bytes]:
        """One frame without its NUL: command, headers (a repeated one's first value counts,
        as STOMP 1.2 says) and body."""
        head, _, body = raw.partition(b"\n\n")
        command, *lines = head.decode().split("\n")
        headers: dict[str, str] = {}
        for line in lines:
            key, _, value = line.partition(":")
            headers.setdefault(key, value)
        return command, headers, body

    def send_frame(self, command: str, headers: dict[str, str] | None = None,
                   body: bytes = b"", *, binary: bool = False) -> None:
        self.send(self.encode(command, headers, body), binary=binary)

    def send(self, data: bytes, *, binary: bool = False) -> None:
        if binary:
            self.ws.send_binary(data)
        else:
            self.ws.send(data.decode())

    def frame(self) -> tuple[str, dict[str, str], bytes]:
        """The next frame from the broker (heart-beats counted and skipped)."""
        while True:
            stripped = self.buffer.lstrip(b"\r\n")
            self.heartbeats += self.buffer[:len(self.buffer) - len(stripped)].count(b"\n")
            self.buffer = stripped
            end = self.buffer.find(b"\x00")
            if end >= 0:
                raw, self.buffer = self.buffer[:end], self.buffer[end + 1:]
                return self.decode(raw)
            data = self.ws.recv()
            self.buffer += data.encode() if isinstance(data, str) else data

    def close(self) -> None:
        self.ws.close()


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], socket.socket]:
    """Send *request* as it is; the status and headers of the answer, and the open socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers, sock


def upgrade_request(path: str = "/ws", *, protocols: str | None = None, version: str = "13",
                    key: str | None = "dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Version: {version}"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
