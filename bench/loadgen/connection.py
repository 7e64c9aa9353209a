"""The asyncio socket every protocol client of loadgen sits on.

A protocol subclass parses what arrives in `parse(buffer)` and returns how many bytes it used;
the hot frames (deliveries, confirms) it handles there and then, everything else it hands to
`push_control`, where set-up code awaits it with `next_control`. Writes are queued on the
transport and `drain()` waits while the transport is over its high-water mark, so a broker
that stops reading slows the publisher down instead of growing our memory.
"""

from __future__ import annotations

import asyncio
import collections


class ProtocolError(RuntimeError):
    """The broker refused something or closed on us; the message is the broker's reason."""


class Connection(asyncio.Protocol):
    """One TCP connection with an input buffer, control-frame queue and write back pressure."""

    WRITE_HIGH_WATER = 1 << 20

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.controls: collections.deque = collections.deque()
        self.lost: BaseException | None = None
        self.running = False  # set once set-up is over: then a refusal fails the connection
        self.progress = asyncio.Event()  # set whenever a confirm (ack, receipt, PUBACK) arrives
        self._control_waiter: asyncio.Future | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    @classmethod
    async def open(cls, host: str, port: int, *args, timeout: float = 30.0):
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: cls(*args), host, port), timeout)
        return protocol

    # -- asyncio callbacks --------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=self.WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            used = self.parse(self.buffer)
        except ProtocolError as error:
            self.fail(error)
            return
        if used:
            del self.buffer[:used]

    def connection_lost(self, exc) -> None:
        if self.lost is None:
            self.lost = ProtocolError(f"connection closed by the broker ({exc or 'EOF'})")
        self._wake()
        self._writable.set()
        self.progress.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- for subclasses -----------------------------------------------------------------------
    def parse(self, buffer: bytearray) -> int:
        raise NotImplementedError

    def push_control(self, item) -> None:
        reason = self.refusal(item)
        if reason and self.running:  # nobody awaits controls mid-run: fail loudly instead
            self.fail(ProtocolError(reason))
            return
        self.controls.append(item)
        self._wake()

    def refusal(self, item) -> str | None:
        """The broker's reason if `item` closes the connection or channel on us, else None."""
        return None

    def fail(self, error: BaseException) -> None:
        """Remember why the connection is unusable and drop it."""
        if self.lost is None:
            self.lost = error
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self._control_waiter is not None and not self._control_waiter.done():
            self._control_waiter.set_result(None)

    # -- for the roles ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.lost is not None:
            raise self.lost
        self.transport.write(data)

    async def drain(self) -> None:
        await self._writable.wait()
        if self.lost is not None:
            raise self.lost

    async def next_control(self, timeout: float = 30.0):
        """The next non-hot frame; raises if the connection is lost or nothing comes in time."""
        while not self.controls:
            if self.lost is not None:
                raise self.lost
            self._control_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._control_waiter, timeout)
            except asyncio.TimeoutError:
                raise ProtocolError(f"no reply from the broker within {timeout:g} s") from None
        return self.controls.popleft()

    def check(self) -> None:
        """Raise if the connection broke (called by loops that only watch counters)."""
        if self.lost is not None:
            raise self.lost

    def close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
