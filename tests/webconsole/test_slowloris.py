"""HTTP slowloris: a client that trickles its request line and headers is closed at a deadline
(``http_request_timeout``), and idle connections are bounded (``http_max_idle_connections``).

A private broker with a short deadline (2 s) so the test is quick; each test awaits the close
of the socket (recv returning b"" or a 408) as the event, never a sleep of its own.
"""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from tests.broker_process import BrokerProcess

DEADLINE = 2.0
MAX_IDLE = 3


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("slowloris"),
                         env={"WARREN_HTTP_REQUEST_TIMEOUT": str(DEADLINE),
                              "WARREN_HTTP_MAX_IDLE_CONNECTIONS": str(MAX_IDLE)})
    proc.start()
    yield proc
    proc.stop()


def _connect(broker: BrokerProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", broker.http_port), timeout=60)
    return s


def _read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (the event awaited); 60 s bound."""
    out = b""
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def test_a_client_trickling_headers_is_closed_at_the_deadline(guarded):
    request = (b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\n"
               + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n")   # ~100 s at one byte per 0.5 s
    s = _connect(guarded)
    sent = []
    stop = threading.Event()

    def trickle() -> None:
        for i in range(len(request)):
            if stop.is_set():
                return
            try:
                s.send(request[i:i + 1])
            except OSError:
                return
            sent.append(i)
            stop.wait(0.5)   # the attacker's pace (each byte resets Twisted's idle timeout)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        answer = _read_until_closed(s)
    finally:
        stop.set()
        t.join(5)
        s.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert len(sent) < len(request), "the whole request went through: no deadline"


def test_a_request_completed_in_time_is_served_and_the_connection_kept(guarded):
    s = _connect(guarded)
    try:
        s.sendall(b"GET /api/overview HTTP/1.1\r\nHost: local")
        s.sendall(b"host\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "closed before the response"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
    finally:
        s.close()


def test_the_deadline_starts_again_after_each_response(guarded):
    """A kept-alive connection that then trickles a second request is closed too."""
    s = _connect(guarded)
    try:
        s.sendall(b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\n"
                  b"Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n")
        s.sendall(b"GET /api/overview HTTP/1.1\r\n")   # and never the rest
        answer = _read_until_closed(s)
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.count(b"HTTP/1.1 200") == 1
    assert b"HTTP/1.1 408" in answer


def test_a_silent_connection_is_closed_at_the_deadline_without_a_word(guarded):
    """Nothing sent since the last response: closed, no 408 that could cross a request."""
    s = _connect(guarded)
    try:
        assert _read_until_closed(s) == b""
    finally:
        s.close()


def test_idle_connections_are_bounded_oldest_closed_first(guarded):
    # each sends the first byte of a request, so that its deadline would answer 408
    oldest = _connect(guarded)
    oldest.sendall(b"G")
    others = []
    for _ in range(MAX_IDLE):
        others.append(_connect(guarded))
        others[-1].sendall(b"G")
    try:
        # one idle connection more than allowed: the oldest is dropped at once (no 408: the
        # deadline, which answers 408 here, is not what closed it) ...
        assert _read_until_closed(oldest) == b""
        # ... and the others wait for their own deadline
        for s in others:
            assert _read_until_closed(s).startswith(b"HTTP/1.1 408")
    finally:
        for s in [oldest, *others]:
            s.close()
    r = requests.get(guarded.http_url + "/api/overview", auth=("guest", "guest"), timeout=30)
    assert r.status_code == 200
