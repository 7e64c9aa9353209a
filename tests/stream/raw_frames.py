"""Raw Stream protocol frames over a socket, for what no client library sends."""

from __future__ import annotations

import socket
import struct

TIMEOUT = 30


def frame(key, *parts, version=1):
    body = struct.pack(">HH", key, version) + b"".join(parts)
    return struct.pack(">I", len(body)) + body


def string(s):
    raw = s.encode()
    return struct.pack(">H", len(raw)) + raw


class Raw:
    """A socket speaking frames."""

    def __init__(self, broker):
        self.sock = socket.create_connection(("127.0.0.1", broker.stream_port), TIMEOUT)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError(f"closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def frame(self):
        (size,) = struct.unpack(">I", self.recv_exact(4))
        body = self.recv_exact(size)
        key, version = struct.unpack_from(">HH", body)
        return key, body[4:]

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def ask(self, key, *parts):
        """Send a request; the response's (code, rest of its body)."""
        self.send(frame(key, *parts))
        got, body = self.frame()
        assert got == key | 0x8000, got
        return struct.unpack_from(">H", body, 4)[0], body[6:]

    def login(self, user="guest", password="guest"):
        self.send(frame(17, struct.pack(">Ii", 1, 0)))
        assert self.frame()[0] == 0x8011
        self.send(frame(18, struct.pack(">I", 2)))
        assert self.frame()[0] == 0x8012
        auth = f"\0{user}\0{password}".encode()
        self.send(frame(19, struct.pack(">I", 3), string("PLAIN"),
                        struct.pack(">i", len(auth)), auth))
        key, body = self.frame()
        assert (key, struct.unpack_from(">IH", body)) == (0x8013, (3, 1))
        key, body = self.frame()
        assert key == 20   # tune
        self.send(frame(20, struct.pack(">II", 1048576, 0)))
        self.send(frame(21, struct.pack(">I", 4), string("/")))
        key, body = self.frame()
        assert (key, struct.unpack_from(">IH", body)) == (0x8015, (4, 1))


