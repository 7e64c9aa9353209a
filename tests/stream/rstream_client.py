"""rstream's low-level ``Client``, connected and logged in, for tests that look at frames."""

from __future__ import annotations

from rstream.client import Client


async def client(broker) -> Client:
    c = Client("127.0.0.1", broker.stream_port, frame_max=1024 * 1024, heartbeat=60)
    await c.start()
    await c.authenticate(vhost="/", username="guest", password="guest")
    return c
