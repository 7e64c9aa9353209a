"""``python -m tests.mqtt.gc_after_close N``: an in-process broker with the real MQTT listener
on a real TCP port, N clients (raw sockets, in a thread) that connect, subscribe (a filter of
their own, QoS 1, and a shared one), publish a QoS 1 message they receive themselves (still
unacknowledged at the close), then all close at once; once the broker has torn every
connection down, a full collection's count of unreachable objects, printed as JSON with their
kinds. Run in its own process (the reactor and the collector are the process's), for
``test_closed_connections_leave_no_cycles``."""

from __future__ import annotations

import collections
import gc
import json
import socket
import sys
import threading

from twisted.internet import reactor

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.config import Config
from warren.mqtt.codec import (Connect, MqttParser, PubAck, Publish, SubAck, Subscribe,
                               Subscription, encode)
from warren.mqtt.listener import MqttFactory


def main(n: int) -> None:
    broker = Broker(clock=reactor, codec=CODEC)
    broker.ensure_defaults()
    port = reactor.listenTCP(0, MqttFactory(broker, Config(), reactor), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    result: dict = {}

    def clients() -> None:
        socks = []
        for i in range(n):
            sock = socket.create_connection(address, timeout=30)
            parser = MqttParser(protocol_level=4)
            # every fourth a persistent session: its state stays, its connection goes
            sock.sendall(encode(Connect(client_id=f"gc-{i}", clean_start=i % 4 != 0,
                                        username="guest", password=b"guest"), 4)
                         + encode(Subscribe(1, (Subscription(f"gc/{i}/+", 1),
                                                Subscription("$share/g/gc/shared", 0))), 4)
                         + encode(Publish(f"gc/{i}/a", b"x", 1, packet_id=2), 4))
            seen: set[type] = set()
            while not {SubAck, PubAck, Publish} <= seen:
                seen.update(type(p) for p in parser.feed(sock.recv(4096)))
            socks.append(sock)
        for sock in socks:
            sock.close()
        reactor.callFromThread(wait_closed)

    def wait_closed() -> None:
        if broker.connections:
            reactor.callLater(0.01, wait_closed)
            return
        gc.set_debug(gc.DEBUG_SAVEALL)
        result["unreachable"] = gc.collect()
        result["kinds"] = collections.Counter(type(o).__name__ for o in gc.garbage).most_common(8)
        gc.set_debug(0)
        gc.garbage.clear()
        reactor.stop()

    gc.collect()
    gc.disable()      # nothing collected before the count: it sees every cycle left
    threading.Thread(target=clients, daemon=True).start()
    reactor.run()
    print(json.dumps({"connections": n, **result}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
