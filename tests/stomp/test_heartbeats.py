"""Heart-beats as the client asks (warren/stomp/heartbeats.py).

ActiveMQ 5.17 is the reference (tests/compat/stomp_activemq.py): CONNECT ``heart-beat:cx,cy``
is answered ``heart-beat:cy,cx``; the broker sends every cy ms and expects every cx ms. warren
raises intervals below ``stomp_heartbeat_floor`` (ActiveMQ has no floor) and says so in
CONNECTED.
"""

from __future__ import annotations

import threading

import pytest
import stomp

from tests.broker_process import BrokerProcess
from tests.stomp.conftest import CONNECTIONS, TIMEOUT, Client, raw_connect, read_until_closed

FLOOR = 200


@pytest.fixture(scope="module")
def hb_broker(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("hb"), store="memory",
                         env={"WARREN_STOMP_HEARTBEAT_FLOOR": str(FLOOR)})
    proc.start()
    yield proc
    proc.stop()


def _connected(port: int, version: str, heart_beat: str) -> tuple[bytes, object]:
    s = raw_connect(port)
    s.sendall(f"CONNECT\naccept-version:{version}\nlogin:guest\npasscode:guest\n"
              f"heart-beat:{heart_beat}\n\n\0".encode())
    data = b""
    while b"\0" not in data:
        data += s.recv(4096)
    head, _, rest = data.partition(b"\0")
    return head, (s, rest)


@pytest.mark.parametrize("asked, answered", [
    ("1000,2000", "2000,1000"), ("0,500", "500,0"), ("5000,0", "0,5000"), ("0,0", "0,0"),
    ("10,10", f"{FLOOR},{FLOOR}"), ("10,0", f"0,{FLOOR}")])
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_connected_answers_the_clients_request(hb_broker, version, asked, answered):
    head, (s, _) = _connected(hb_broker.stomp_port, version, asked)
    s.close()
    assert head.startswith(b"CONNECTED\n")
    assert f"\nheart-beat:{answered}\n".encode() in head


def test_stomp_10_has_no_heartbeats(hb_broker):
    head, (s, _) = _connected(hb_broker.stomp_port, "1.0", "1000,1000")
    s.close()
    assert b"\nheart-beat:0,0\n" in head


class _Beats(stomp.ConnectionListener):
    def __init__(self, wanted: int) -> None:
        self.count = 0
        self.wanted = wanted
        self.enough = threading.Event()

    def on_heartbeat(self) -> None:
        self.count += 1
        if self.count >= self.wanted:
            self.enough.set()


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_server_sends_every_cy_and_keeps_a_beating_client(hb_broker, version, unique):
    # the client beats every second and wants the broker's every 300 ms: ten of the broker's
    # heart-beats span more than the 2 s grace for a silent client, and the session still
    # works (a second between beats leaves room for a loaded machine)
    c = Client(hb_broker.stomp_port, version, heartbeats=(1000, 300))
    beats = _Beats(10)
    c.conn.set_listener("beats", beats)
    try:
        assert beats.enough.wait(TIMEOUT * 3)
        c.subscribe(f"/queue/{unique}")
        c.send(f"/queue/{unique}", "still here")
        assert c.recorder.message().body == "still here"
    finally:
        c.close()


def test_server_heartbeat_is_an_eol_between_frames(hb_broker):
    _, (s, rest) = _connected(hb_broker.stomp_port, "1.2", f"0,{FLOOR}")
    s.settimeout(TIMEOUT)
    while len(rest.strip(b"\0")) < 2:
        rest += s.recv(4096)       # the broker's heart-beats, nothing else
    s.close()
    assert rest.strip(b"\r\n\0") == b""


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_silent_client_is_dropped(hb_broker, version):
    _, (s, _) = _connected(hb_broker.stomp_port, version, f"{FLOOR},0")
    s.settimeout(TIMEOUT)
    try:
        read_until_closed(s)       # the client promised a beat every 200 ms and sent none
    except ConnectionResetError:
        pass
    s.close()
    hb_broker.wait_for_line("no heart-beat from the client")


@pytest.mark.parametrize("value", ["a,b", "1000", "-1,5", "1,2,3", "１,2"])
def test_bad_heart_beat_header_is_an_error(hb_broker, value):
    s = raw_connect(hb_broker.stomp_port)
    s.sendall(f"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n"
              f"heart-beat:{value}\n\n\0".encode())
    data = read_until_closed(s)
    s.close()
    assert data.startswith(b"ERROR\n")
    assert b"message:Invalid heart-beat header\n" in data
    assert "Traceback" not in hb_broker.log()


def test_stompy_heartbeats_negotiated_per_version(hb_broker):
    for version in ("1.1", "1.2"):
        conn = CONNECTIONS[version]([("127.0.0.1", hb_broker.stomp_port)],
                                    heartbeats=(400, 800))
        conn.connect("guest", "guest", wait=True)
        try:
            # stomp.py applies the spec's formula to CONNECTED: it sends every max(400, 400)
            # and expects every max(800, 800)
            assert conn.heartbeats == (400, 800)
        finally:
            conn.disconnect()
