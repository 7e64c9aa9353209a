"""``client-id`` is one connection's at a time (warren/stomp/client_ids.py).

ActiveMQ 5.17 is the reference (tests/compat/stomp_activemq.py): a second CONNECT with a
client-id an open connection has gets ERROR ``Broker: <name> - Client: <id> already connected
from tcp://<first peer>`` (body ``javax.jms.InvalidClientIDException: ...``) and is closed; the
id is free once the first connection is gone. Control characters in an id are refused by
warren (ActiveMQ accepts them).
"""

from __future__ import annotations

import re

import pytest

from tests.polling import eventually
from tests.stomp.conftest import TIMEOUT, Client, raw_connect, read_until_closed


def _connect_raw(port: int, client_id: str) -> bytes:
    s = raw_connect(port)
    s.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\nclient-id:"
              + client_id.encode() + b"\n\n\0")
    data = b""
    while b"\0" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def test_second_connection_with_a_connected_client_id_is_refused(
        client_factory, broker, version, unique):
    first = client_factory(version, headers={"client-id": unique})
    first.subscribe(f"/queue/{unique}")
    second = Client(broker.stomp_port, version, headers={"client-id": unique}, wait=False)
    try:
        error = second.recorder.error()
        text = error.headers["message"]
        assert re.fullmatch(rf"Broker: \S+ - Client: {re.escape(unique)} already connected "
                            r"from tcp://127\.0\.0\.1:\d+", text), text
        assert error.body.startswith("javax.jms.InvalidClientIDException: " + text)
        assert second.recorder.disconnected.wait(TIMEOUT)
    finally:
        second.close()
    # the first connection is untouched
    first.send(f"/queue/{unique}", "still mine")
    assert first.recorder.message().body == "still mine"
    assert "Traceback" not in broker.log()


def test_client_id_is_free_once_the_first_connection_is_gone(client_factory, broker, unique):
    first = client_factory("1.2", headers={"client-id": unique})
    first.sync()
    first.conn.disconnect()
    eventually(lambda: _connect_raw(broker.stomp_port, unique).startswith(b"CONNECTED"),
               "the client-id free again")


def test_client_ids_are_independent(client_factory, unique):
    a = client_factory("1.2", headers={"client-id": unique + "-a"})
    b = client_factory("1.1", headers={"client-id": unique + "-b"})
    a.sync()
    b.sync()


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
@pytest.mark.parametrize("client_id", ["tab\there", "esc\x1b[31m", "del\x7f", "bell\x07"])
def test_control_characters_in_client_id_are_an_error(client_factory, broker, version,
                                                      client_id, unique):
    keeper = client_factory("1.2")
    keeper.conn.send(f"/queue/{unique}", "kept", headers={"persistent": "true"}, receipt="k")
    assert keeper.recorder.receipt() == "k"
    s = raw_connect(broker.stomp_port)
    s.sendall(f"CONNECT\naccept-version:{version}\nlogin:guest\npasscode:guest\n"
              f"client-id:{client_id}\n\n\0".encode())
    data = read_until_closed(s)
    s.close()
    assert data.startswith(b"ERROR\n"), data[:200]
    assert b"\nmessage:Invalid client-id\n" in data
    assert b"control characters" in data
    assert "Traceback" not in broker.log()
    keeper.subscribe(f"/queue/{unique}")             # nothing stored was lost
    assert keeper.recorder.message().body == "kept"


def test_an_empty_client_id_is_an_id_too(broker):
    # ActiveMQ 5.17: a second "client-id:" (empty) clashes with the first; one run only, as
    # every run would use the same id
    first = raw_connect(broker.stomp_port)
    first.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\nclient-id:\n\n\0")
    assert first.recv(4096).startswith(b"CONNECTED")
    try:
        second = _connect_raw(broker.stomp_port, "")
        assert second.startswith(b"ERROR\n")
        assert re.search(rb"\nmessage:Broker\\c \S+ - Client\\c  already connected from ",
                         second), second
    finally:
        first.close()
