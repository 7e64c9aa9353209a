"""What the sans-I/O client (:mod:`warren.network.client`) reports: one frozen dataclass per
thing that happened on the connection, in the order the server's bytes said it.
"""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base of what :meth:`ClientConnection.receive_data` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ConnectionOpened(Event):
    """Connection.Open-Ok arrived: the connection is usable with these tuned values."""

    server_properties: dict
    frame_max: int
    channel_max: int
    heartbeat: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The server closed the connection (``by_server``) or confirmed our close."""

    reply_code: int
    reply_text: str
    class_id: int = 0
    method_id: int = 0
    by_server: bool = True


@dataclass(frozen=True, slots=True)
class ConnectionBlocked(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionUnblocked(Event):
    pass


@dataclass(frozen=True, slots=True)
class ChannelOpened(Event):
    channel: int


@dataclass(frozen=True, slots=True)
class ChannelClosed(Event):
    """The server closed a channel (``by_server``), or confirmed our Channel.Close."""

    channel: int
    reply_code: int
    reply_text: str
    class_id: int = 0
    method_id: int = 0
    by_server: bool = True


@dataclass(frozen=True, slots=True)
class MethodOk(Event):
    """A synchronous reply with nothing more to say (Confirm.Select-Ok, Qos-Ok, …)."""

    channel: int
    method: str         # pamqp name, e.g. "Basic.QosOk"


@dataclass(frozen=True, slots=True)
class ConsumeOk(Event):
    channel: int
    consumer_tag: str


@dataclass(frozen=True, slots=True)
class QueueDeclared(Event):
    channel: int
    queue: str
    message_count: int
    consumer_count: int


@dataclass(frozen=True, slots=True)
class PublishConfirmed(Event):
    """Basic.Ack (``ack``) or Basic.Nack from the server for our publishes in confirm mode."""

    channel: int
    delivery_tag: int
    multiple: bool
    ack: bool


@dataclass(frozen=True, slots=True)
class Delivery(Event):
    channel: int
    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    properties: dict
    body: bytes


@dataclass(frozen=True, slots=True)
class Returned(Event):
    """Basic.Return: a mandatory publish the server could not route."""

    channel: int
    reply_code: int
    reply_text: str
    exchange: str
    routing_key: str
    properties: dict
    body: bytes


@dataclass(frozen=True, slots=True)
class ConsumerCancelled(Event):
    """The server cancelled our consumer (queue deleted; consumer_cancel_notify)."""

    channel: int
    consumer_tag: str


@dataclass(frozen=True, slots=True)
class ProtocolError(Event):
    """The server sent something we cannot accept; the connection is unusable."""

    text: str
