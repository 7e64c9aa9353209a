"""A blocking raw-socket AMQP 0-9-1 peer built on pamqp, for tests of malformed input.

Real clients cannot send a content body without a header or a frame on an unopened channel, so
the bad-input tests speak the protocol by hand: frames are built with pamqp (or as raw bytes)
and whatever the broker answers is read back frame by frame. Reads block with a timeout; a test
waits for the broker's answer (an event), never for a fixed time.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from pamqp import commands, frame as pamqp_frame

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class Closed(Exception):
    """The broker closed the TCP connection."""


class RawAmqp:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self._buf = b""
        self.frame_max = 131072

    # ------------------------------------------------------------------ bytes
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, frame: Any, channel: int = 0) -> None:
        self.send(pamqp_frame.marshal(frame, channel))

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self._buf += chunk

    def read_exact(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self._buf) < n:
            self._fill(deadline)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_frame(self, timeout: float | None = None) -> tuple[int, Any]:
        """(channel, pamqp frame); raises Closed when the socket closes first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self._buf) >= 7:
                size = struct.unpack_from(">I", self._buf, 3)[0]
                if len(self._buf) >= size + 8:
                    consumed, channel, frame = pamqp_frame.unmarshal(self._buf[:size + 8])
                    self._buf = self._buf[consumed:]
                    return channel, frame
            self._fill(deadline)

    def read_method(self, timeout: float | None = None, skip_heartbeats: bool = True
                    ) -> tuple[int, Any]:
        while True:
            channel, frame = self.read_frame(timeout)
            if skip_heartbeats and frame.name == "Heartbeat":
                continue
            return channel, frame

    def expect(self, cls: type, timeout: float | None = None) -> Any:
        channel, frame = self.read_method(timeout)
        assert isinstance(frame, cls), f"expected {cls.__name__}, got {frame!r}"
        return frame

    def wait_closed(self, timeout: float | None = None) -> None:
        """Read (and drop) frames until the broker closes the socket."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._buf = b""
                self._fill(deadline)
        except (Closed, ConnectionResetError):
            return

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ handshake
    def handshake(self, *, user: str = "guest", password: str = "guest", vhost: str = "/",
                  heartbeat: int = 0, frame_max: int = 131072, channel_max: int = 0,
                  capabilities: dict[str, Any] | None = None) -> commands.Connection.Tune:
        """Connect up to connection.open-ok; returns the server's connection.tune."""
        self.send(PROTOCOL_HEADER)
        self.start = self.expect(commands.Connection.Start)
        caps = {"authentication_failure_close": True, "consumer_cancel_notify": True,
                "connection.blocked": True}
        caps.update(capabilities or {})
        self.send_frame(commands.Connection.StartOk(
            client_properties={"product": "raw test client", "capabilities": caps},
            mechanism="PLAIN", response=f"\0{user}\0{password}", locale="en_US"))
        tune = self.expect(commands.Connection.Tune)
        self.frame_max = frame_max
        self.send_frame(commands.Connection.TuneOk(channel_max=channel_max,
                                                   frame_max=frame_max, heartbeat=heartbeat))
        self.send_frame(commands.Connection.Open(virtual_host=vhost))
        self.expect(commands.Connection.OpenOk)
        return tune

    def open_channel(self, number: int = 1) -> None:
        self.send_frame(commands.Channel.Open(), number)
        channel, _ = self.read_method()
        assert channel == number

    def expect_connection_close(self, timeout: float | None = None
                                ) -> commands.Connection.Close:
        """The broker's connection.close (skipping anything before it); answers close-ok."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            _, frame = self.read_method(max(deadline - time.monotonic(), 0.01))
            if isinstance(frame, commands.Connection.Close):
                try:
                    self.send_frame(commands.Connection.CloseOk())
                except OSError:
                    pass
                return frame


def frame_bytes(ftype: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    """A frame built by hand (type, channel, size, payload, end byte)."""
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes((end,))
