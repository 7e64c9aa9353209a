"""AMQP 1.0 time-outs, on a broker of their own (a handshake time-out of 1 s, a heartbeat of
1 s): a client that never finishes SASL and open is closed, as 0-9-1 clients are; one that is
silent past the idle time-out the broker offered is closed with
``amqp:resource-limit-exceeded``, as RabbitMQ 4 closes it."""

from __future__ import annotations

import select

import pytest

from tests.amqp1.raw import Raw, close_error
from tests.broker_process import BrokerProcess
from warren.amqp1_message.codec import SASL_HEADER, Composite, encode_frame


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    with BrokerProcess(tmp_path_factory.mktemp("amqp1-timeouts"),
                       extra_args=["--heartbeat", "1"],
                       env={"WARREN_HANDSHAKE_TIMEOUT": "1"}) as broker:
        yield broker


def test_handshake_not_finished_in_time_is_closed(quick):
    raw = Raw(quick.amqp_port)
    assert raw.header(SASL_HEADER) == SASL_HEADER
    assert raw.frame().performative.kind == "sasl_mechanisms"
    assert raw.frame() is None              # closed by the broker: no SASL init came
    quick.wait_for_line("handshake timed out")


def test_silent_client_is_closed_after_the_idle_time_out(quick):
    raw = Raw(quick.amqp_port)
    raw.login()
    raw.sock.sendall(encode_frame(Composite("open", container_id="quiet")))
    opened = raw.frame().performative
    assert opened.idle_time_out == 500      # half of the heartbeat, as the spec asks
    err = close_error(raw)                  # then nothing from us: closed
    assert err.condition == "amqp:resource-limit-exceeded"
    assert err.description == "no frame received from client within idle timeout threshold"


def test_client_keeping_the_idle_time_out_stays(quick):
    raw = Raw(quick.amqp_port)
    raw.login()
    raw.sock.sendall(encode_frame(Composite("open", container_id="lively")))
    assert raw.frame().performative.kind == "open"
    raw.sock.sendall(encode_frame(Composite("begin", next_outgoing_id=0, incoming_window=10,
                                            outgoing_window=10)))
    assert raw.frame().performative.kind == "begin"
    for _ in range(4):                      # an empty frame each 0.5 s for 2 heartbeats
        raw.sock.sendall(encode_frame(None))
        assert not readable(raw, 0.5)       # nothing from the broker: no close
    raw.sock.sendall(encode_frame(Composite("end")))
    assert raw.frame().performative.kind == "end"


def readable(raw: Raw, seconds: float) -> bool:
    """Whether the broker sent anything (here: only a close would come) within *seconds*."""
    ready, _w, _x = select.select([raw.sock], [], [], seconds)
    return bool(ready)
