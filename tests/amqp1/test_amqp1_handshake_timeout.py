"""A client that opens a socket and never finishes SASL and open is closed after the
handshake time-out, as 0-9-1 clients are (a broker of its own: a time-out of 1 s)."""

from __future__ import annotations

from tests.amqp1.test_amqp1 import Raw
from tests.broker_process import BrokerProcess
from warren.amqp1.codec import SASL_HEADER


def test_handshake_not_finished_in_time_is_closed(tmp_path):
    with BrokerProcess(tmp_path, env={"WARREN_HANDSHAKE_TIMEOUT": "1"}) as broker:
        raw = Raw(broker.amqp_port)
        assert raw.header(SASL_HEADER) == SASL_HEADER
        assert raw.frame().performative.kind == "sasl_mechanisms"
        assert raw.frame() is None              # closed by the broker: no SASL init came
        broker.wait_for_line("handshake timed out")
