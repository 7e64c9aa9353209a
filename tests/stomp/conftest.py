"""STOMP test helpers: stomp.py connections at a chosen version, listeners that await frames.

Every wait is on a ``queue.Queue``/``threading.Event`` filled by the client's receiver thread,
never a sleep. "Nothing arrived" is shown by order instead: a later frame the test is sure to
get (a receipt, a matching message) arrives first.
"""

from __future__ import annotations

import queue
import socket
import threading

import pytest
import stomp

from tests.broker_process import BrokerProcess

VERSIONS = ("1.0", "1.1", "1.2")
CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11,
               "1.2": stomp.Connection12}
TIMEOUT = 10.0


class Recorder(stomp.ConnectionListener):
    """Collects what the broker sends to one connection."""

    def __init__(self) -> None:
        self.messages: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        self.receipts: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()

    def on_message(self, frame) -> None:
        self.messages.put(frame)

    def on_error(self, frame) -> None:
        self.errors.put(frame)

    def on_receipt(self, frame) -> None:
        self.receipts.put(frame.headers.get("receipt-id"))

    def on_disconnected(self) -> None:
        self.disconnected.set()

    def message(self, timeout: float = TIMEOUT):
        return self.messages.get(timeout=timeout)

    def error(self, timeout: float = TIMEOUT):
        return self.errors.get(timeout=timeout)

    def receipt(self, timeout: float = TIMEOUT) -> str:
        return self.receipts.get(timeout=timeout)


class Client:
    """A connected stomp.py connection at one version with its recorder."""

    def __init__(self, port: int, version: str, *, login: str = "guest",
                 passcode: str = "guest", headers: dict | None = None,
                 vhost: str | None = None, heartbeats=(0, 0), wait: bool = True) -> None:
        self.version = version
        kwargs = {"heartbeats": heartbeats} if version != "1.0" else {}
        if vhost is not None and version != "1.0":
            kwargs["vhost"] = vhost
        self.conn = CONNECTIONS[version]([("127.0.0.1", port)], **kwargs)
        self.recorder = Recorder()
        self.conn.set_listener("rec", self.recorder)
        self.conn.connect(login, passcode, wait=wait, headers=headers or {})
        self._receipt = 0

    def subscribe(self, destination: str, sub_id: str = "s1", ack: str = "auto",
                  **headers) -> None:
        if self.version == "1.0":
            headers["id"] = sub_id
            self.conn.subscribe(destination, ack=ack, headers=headers)
        else:
            self.conn.subscribe(destination, sub_id, ack=ack, headers=headers)
        self.sync()

    def sync(self) -> None:
        """Round trip: every earlier frame has been handled once this returns."""
        self._receipt += 1
        rid = f"sync-{self._receipt}"
        self.conn.send_frame("BEGIN", {"transaction": rid, "receipt": rid})
        self.conn.send_frame("ABORT", {"transaction": rid})
        got = self.recorder.receipt()
        assert got == rid, got

    def send(self, destination: str, body, **headers) -> None:
        self.conn.send(destination, body, headers=headers)

    def ack_id(self, frame) -> tuple[str, str | None]:
        h = frame.headers
        if self.version == "1.2":
            return h["ack"], None
        return h["message-id"], h.get("subscription")

    def ack(self, frame, **kw) -> None:
        msg_id, sub = self.ack_id(frame)
        if self.version == "1.0":
            self.conn.ack(msg_id, **kw)
        elif self.version == "1.1":
            self.conn.ack(msg_id, sub, **kw)
        else:
            self.conn.ack(msg_id, **kw)

    def nack(self, frame, requeue: bool | None = None) -> None:
        msg_id, sub = self.ack_id(frame)
        headers = {} if requeue is None else {"requeue": "true" if requeue else "false"}
        if self.version == "1.0":
            # stomp.py 1.0 has no NACK; the frame is the 1.1 one with message-id
            self.conn.send_frame("NACK", dict(headers, **{"message-id": msg_id}))
        elif self.version == "1.1":
            self.conn.send_frame("NACK", dict(headers, **{"message-id": msg_id,
                                                         "subscription": sub}))
        else:
            self.conn.send_frame("NACK", dict(headers, id=msg_id))

    def close(self) -> None:
        try:
            if self.conn.is_connected():
                self.conn.disconnect()
        except Exception:
            pass


@pytest.fixture(params=VERSIONS)
def version(request) -> str:
    return request.param


@pytest.fixture
def client_factory(broker):
    made: list[Client] = []

    def make(version: str = "1.2", **kw) -> Client:
        c = Client(broker.stomp_port, version, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(client_factory, version) -> Client:
    return client_factory(version)


def raw_connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return s


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the broker writes until it closes the connection."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The module's broker, with a 4 MiB STOMP frame limit (the default is 64 MiB) so the
    over-limit frame tests stay small."""
    proc = BrokerProcess(tmp_path_factory.mktemp("broker"),
                         env={"WARREN_STOMP_MAX_FRAME_SIZE": str(4 * 1024 * 1024)})
    proc.start()
    yield proc
    proc.stop()
