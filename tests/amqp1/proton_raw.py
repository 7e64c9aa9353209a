"""Whole AMQP 1.0 messages through python-qpid-proton's blocking API, byte for byte.

proton's ``Message`` has no footer, so a test that sends or checks one streams the encoded
message itself (``RawMessage``) and reads deliveries' bytes (``RawReceiver``); ``sections``
decodes them with proton's own codec, so the broker's codec is not its own judge."""

from __future__ import annotations

from typing import Any

from proton import Data, Delivery, Described, Handler, Message, ulong

FOOTER = 0x78
MESSAGE_ANNOTATIONS = 0x72
DELIVERY_ANNOTATIONS = 0x71


def section(code: int, value: Any) -> bytes:
    """One encoded section (a described value)."""
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def sections(payload: bytes) -> dict[int, Any]:
    """A message's sections by descriptor code (a message has each at most once here)."""
    return dict(section_list(payload))


def section_list(payload: bytes) -> list[tuple[int, Any]]:
    """A message's sections in order, as (descriptor code, value): a body may have several."""
    found: list[tuple[int, Any]] = []
    while payload:
        data = Data()
        used = data.decode(payload)
        payload = payload[used:]
        data.rewind()
        data.next()
        value = data.get_object()
        found.append((int(value.descriptor), _plain(value.value)))
    return found


def _plain(value: Any) -> Any:
    """proton's decoded value with its binaries as bytes (it gives memoryviews)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def encoded(message: Message, before: bytes = b"", after: bytes = b"") -> bytes:
    """``message`` encoded by proton, with sections put before its header is (delivery
    annotations go first) and after its body (a footer)."""
    return before + bytes(message.encode()) + after


class RawMessage:
    """Sent by ``BlockingSender.send`` as these bytes (proton calls ``send`` on anything
    that has one), which then waits for the broker's outcome as for a ``Message``."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def send(self, sender: Any, tag: Any = None) -> Delivery:
        delivery = sender.delivery(tag or sender.delivery_tag())
        sender.stream(self.payload)
        sender.advance()
        return delivery


class RawReceiver(Handler):
    """A receiving link's handler that keeps each delivery's bytes and accepts it."""

    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[bytes] = []

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        if delivery.partial or not delivery.readable:
            return
        self.payloads.append(bytes(event.link.recv(delivery.pending)))
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()


def receive_raw(conn: Any, address: str) -> bytes:
    """The bytes of the first message ``address`` delivers on the blocking connection."""
    handler = RawReceiver()
    receiver = conn.create_receiver(address, credit=1, handler=handler)
    conn.wait(lambda: bool(handler.payloads), msg=f"a message from {address}")
    receiver.close()
    return handler.payloads[0]
