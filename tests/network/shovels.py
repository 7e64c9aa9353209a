"""Shared tools of the shovel fault tests: the management API, counting, and TCP tricks.

Everything waits on a condition polled with a deadline (``wait_until``), never on a sleep
used as synchronisation. Messages carry unique bodies; :func:`tally` turns what was published
(confirmed) and what was read back at both ends into lost and duplicated counts.
"""

from __future__ import annotations

import itertools
import socket
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import requests

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher
from tests.polling import eventually

ACK_MODES = ("on-confirm", "on-publish", "no-ack")

#: every count a test measured, printed in the session summary (see tests/network/conftest.py)
RESULTS: list[str] = []


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "",
               interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true (tests/polling.py)."""
    return eventually(predicate, what, timeout=timeout, every=interval)


# ------------------------------------------------------------------------------ management API
def _q(vhost: str) -> str:
    return urllib.parse.quote(vhost, safe="")


def api(broker: BrokerProcess, method: str, path: str, json: Any = None,
        auth: tuple[str, str] = ("guest", "guest")) -> requests.Response:
    return requests.request(method, broker.http_url + path, json=json, auth=auth, timeout=10)


def put_shovel(broker: BrokerProcess, name: str, value: dict, vhost: str = "/") -> None:
    r = api(broker, "PUT", f"/api/parameters/shovel/{_q(vhost)}/{name}", {"value": value})
    assert r.status_code in (201, 204), r.text


def delete_shovel(broker: BrokerProcess, name: str, vhost: str = "/") -> None:
    r = api(broker, "DELETE", f"/api/parameters/shovel/{_q(vhost)}/{name}")
    assert r.status_code == 204, r.text


def shovel_status(broker: BrokerProcess, name: str, vhost: str = "/") -> dict | None:
    try:
        r = api(broker, "GET", f"/api/shovels/{_q(vhost)}/{name}")
    except requests.RequestException:
        return None  # the broker is not answering (yet)
    if r.status_code != 200:
        return None
    body = r.json()
    if isinstance(body, list):  # tolerate a list answer
        body = next((s for s in body if s.get("name") == name), None)
    return body


def wait_state(broker: BrokerProcess, name: str, state: str, timeout: float = 30.0,
               reason: str | None = None) -> dict:
    """Poll the shovel's status until ``state`` (and a reason containing ``reason``)."""
    def check() -> dict | None:
        s = shovel_status(broker, name)
        if s and s.get("state") == state and (reason is None or reason in s.get("reason", "")):
            return s
        return None
    try:
        return wait_until(check, timeout, f"shovel {name} {state} {reason or ''}")
    except AssertionError as error:
        raise AssertionError(f"{error}; status now {shovel_status(broker, name)}\n"
                             + broker.log()) from None


def queue_messages(broker: BrokerProcess, queue: str, vhost: str = "/") -> int | None:
    """Ready + unacked messages of a queue (None: no such queue or no answer)."""
    try:
        r = api(broker, "GET", f"/api/queues/{_q(vhost)}/{urllib.parse.quote(queue, safe='')}")
    except requests.RequestException:
        return None
    return r.json().get("messages") if r.status_code == 200 else None


def add_user(broker: BrokerProcess, user: str, password: str, vhost: str = "/") -> None:
    r = api(broker, "PUT", f"/api/users/{user}", {"password": password, "tags": ""})
    assert r.status_code in (201, 204), r.text
    r = api(broker, "PUT", f"/api/permissions/{_q(vhost)}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"})
    assert r.status_code in (201, 204), r.text


def remote_uri(broker: BrokerProcess, port: int | None = None, user: str = "guest",
               password: str = "guest") -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{port or broker.amqp_port}/%2F"


# ------------------------------------------------------------------------------ clients
def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", broker.amqp_port, connection_attempts=1, socket_timeout=5,
        blocked_connection_timeout=30))


def bodies(tag: str, count: int, start: int = 0) -> list[bytes]:
    return [f"{tag}-{i:06d}".encode() for i in range(start, start + count)]


def publish_confirmed(broker: BrokerProcess, queue: str, messages: list[bytes],
                      exchange: str = "", declare: bool = True, window: bool = False) -> None:
    """Persistent publishes to ``queue`` (through ``exchange``: the routing key), each
    confirmed by the broker (raises if one is not).

    ``window``: many in flight at once (durability tests' ConfirmedPublisher), much faster."""
    if window:
        if declare:
            declare_queue(broker, queue)
        p = ConfirmedPublisher(broker.amqp_url, queue, iter(messages), exchange=exchange,
                               window=500).run()
        assert p.error is None and not p.nacked and len(p.acked) == len(messages), p.error
        return
    with connect(broker) as conn:
        ch = conn.channel()
        if declare:
            ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        for body in messages:
            ch.basic_publish(exchange, queue, body, pika.BasicProperties(delivery_mode=2))


def declare_queue(broker: BrokerProcess, queue: str) -> None:
    with connect(broker) as conn:
        conn.channel().queue_declare(queue, durable=True)


def drain(broker: BrokerProcess, queue: str, limit: int = 1_000_000) -> list[bytes]:
    """Take every message of ``queue`` (acked); [] when the queue does not exist.

    Call it once nothing publishes to the queue any more: it takes as many as the queue
    held when it looked."""
    out: list[bytes] = []
    with connect(broker) as conn:
        ch = conn.channel()
        try:
            expected = ch.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return out
        if not expected:
            return out
        ch.basic_qos(prefetch_count=500)
        for method, _props, body in ch.consume(queue, inactivity_timeout=2.0):
            if method is None:
                break
            out.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(out) >= min(expected, limit):
                break
        ch.cancel()
    return out


@dataclass
class Tally:
    published: int
    delivered: int        # copies at the destination
    left: int             # still at the source
    lost: int             # published, found at neither end
    duplicated: int       # extra copies at the destination

    def __str__(self) -> str:
        return (f"published={self.published} delivered={self.delivered} left={self.left} "
                f"lost={self.lost} dup={self.duplicated}")


def tally(published: list[bytes], at_destination: list[bytes], at_source: list[bytes]
          ) -> Tally:
    dest = Counter(at_destination)
    seen = set(dest) | set(at_source)
    lost = sum(1 for b in published if b not in seen)
    dup = sum(c - 1 for c in dest.values() if c > 1)
    return Tally(len(published), len(at_destination), len(at_source), lost, dup)


def record(fault: str, ack_mode: str, t: Tally) -> None:
    line = f"{fault:<32} {ack_mode:<11} {t}"
    RESULTS.append(line)
    print("SHOVEL-COUNTS", line)


# ------------------------------------------------------------------------------ TCP tricks
class _TcpServer:
    """Listens on a free port of 127.0.0.1; a thread accepts and hands each connection to
    :meth:`serve`. A subclass sets its own fields before calling ``__init__`` (the thread
    starts there)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.serve(client)

    def serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        self.listener.close()


class TcpProxy(_TcpServer):
    """Forwards 127.0.0.1:port to a target port; ``cut()`` drops every connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False     # a partition: connections are dropped as they come
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        if self.refusing:
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self.accepted += 1
            self._sockets += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Drop every forwarded connection (a reset on both sides); returns how many were
        made since the last cut (some may have ended already)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass
        return len(sockets) // 2

    def partition(self) -> int:
        """Cut every connection and drop new ones until :meth:`heal`."""
        self.refusing = True
        return self.cut()

    def heal(self) -> None:
        self.refusing = False

    def close(self) -> None:
        super().close()
        self.cut()


class GarbageServer(_TcpServer):
    """Accepts TCP connections and answers the first bytes with junk (or nothing), then closes
    them, or with ``keep_open`` leaves them open until :meth:`close` (a peer that stalls)."""

    JUNK = b"HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff\xfe garbage \x01\x02\x03" * 4

    def __init__(self, junk: bytes = JUNK, *, keep_open: bool = False) -> None:
        self.junk = junk          # b"": nothing is said after the protocol header
        self.keep_open = keep_open
        self._open: list[socket.socket] = []
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        self.accepted += 1
        try:
            client.settimeout(2)
            try:
                client.recv(64)
            except OSError:
                pass
            client.sendall(self.junk)
        except OSError:
            pass
        finally:
            if self.keep_open:
                self._open.append(client)
            else:
                client.close()

    def close(self) -> None:
        super().close()
        for client in self._open:
            client.close()


class Producer(threading.Thread):
    """Publishes ``tag-000000``, ``tag-000001`` ... one confirmed persistent message at a time
    to ``exchange`` with ``routing_key`` until stopped, after ``limit`` messages (None: no
    limit) or when its connection dies; ``confirmed`` is what the broker confirmed. Through
    the default exchange the routing key names a queue, which is declared durable first."""

    def __init__(self, broker: BrokerProcess, routing_key: str, tag: str,
                 limit: int | None = 100_000, *, exchange: str = "") -> None:
        super().__init__(daemon=True)
        self.broker, self.routing_key, self.tag = broker, routing_key, tag
        self.limit, self.exchange = limit, exchange
        self.confirmed: list[bytes] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        numbers = range(self.limit) if self.limit is not None else itertools.count()
        try:
            with connect(self.broker) as conn:
                ch = conn.channel()
                if not self.exchange:
                    ch.queue_declare(self.routing_key, durable=True)
                ch.confirm_delivery()
                for i in numbers:
                    if self.stopping.is_set():
                        break
                    body = f"{self.tag}-{i:06d}".encode()
                    ch.basic_publish(self.exchange, self.routing_key, body,
                                     pika.BasicProperties(delivery_mode=2))
                    self.confirmed.append(body)
        except (pika.exceptions.AMQPError, OSError) as error:
            self.error = error   # the broker went away: what was confirmed stays counted

    def wait_confirmed(self, count: int, timeout: float = 60.0) -> None:
        wait_until(lambda: len(self.confirmed) >= count or not self.is_alive(), timeout,
                   f"{count} confirmed by {self.tag}")
        assert len(self.confirmed) >= count, self.error

    def finish(self) -> list[bytes]:
        self.stopping.set()
        self.join(60)
        assert not self.is_alive()
        return self.confirmed
