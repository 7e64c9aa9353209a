"""A raw AMQP 1.0 client on a socket, for the tests of bad input: SASL ANONYMOUS, open, then
whatever frames a test writes, built with warren's own codec."""

from __future__ import annotations

import socket

from warren.amqp1_message.codec import (AMQP_HEADER, SASL_FRAME, SASL_HEADER, Composite,
                                        FrameReader, Symbol, encode_frame)


class Raw:
    """A 1.0 client on bytes: SASL ANONYMOUS, then whatever the test writes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.reader = FrameReader(1 << 20)
        self.pending: list = []

    def header(self, header: bytes) -> bytes:
        self.sock.sendall(header)
        return self._exactly(8)

    def _exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def frame(self):
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += list(self.reader.feed(data))
        return self.pending.pop(0)

    def login(self) -> None:
        assert self.header(SASL_HEADER) == SASL_HEADER
        assert self.frame().performative.kind == "sasl_mechanisms"
        self.sock.sendall(encode_frame(Composite("sasl_init", mechanism=Symbol("ANONYMOUS")),
                                       ftype=SASL_FRAME))
        assert self.frame().performative.code == 0
        assert self.header(AMQP_HEADER) == AMQP_HEADER

    def open(self) -> None:
        self.login()
        self.sock.sendall(encode_frame(Composite("open", container_id="raw")))
        assert self.frame().performative.kind == "open"

    def begin(self, channel: int = 0, incoming_window: int = 10,
              outgoing_window: int = 10) -> None:
        self.sock.sendall(encode_frame(Composite(
            "begin", next_outgoing_id=0, incoming_window=incoming_window,
            outgoing_window=outgoing_window), channel))
        assert self.frame().performative.kind == "begin"

    def attach_sender(self, target: Composite, handle: int = 0) -> Composite:
        """A sending link on session 0, attached and given credit: the broker's flow."""
        self.sock.sendall(encode_frame(Composite("attach", name=f"s{handle}", handle=handle,
                                                 role=False, target=target)))
        assert self.frame().performative.kind == "attach"
        flow = self.frame().performative
        assert flow.kind == "flow"
        return flow

    def attach_receiver(self, address: str, handle: int = 0) -> None:
        """A receiving link on session 0 from ``address``, attached (no credit given yet)."""
        self.sock.sendall(encode_frame(Composite(
            "attach", name=f"r{handle}", handle=handle, role=True,
            source=Composite("source", address=address))))
        assert self.frame().performative.kind == "attach"

    def transfer(self, handle: int, delivery_id: int, message: bytes,
                 state: Composite | None = None) -> None:
        self.sock.sendall(encode_frame(Composite(
            "transfer", handle=handle, delivery_id=delivery_id,
            delivery_tag=delivery_id.to_bytes(4, "big"), state=state), 0, message))


def close_error(raw: Raw):
    frame = raw.frame()
    assert frame is not None and frame.performative.kind == "close"
    return frame.performative.error
