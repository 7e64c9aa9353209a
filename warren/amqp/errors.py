"""Errors -> AMQP channel.close / connection.close, decided in one place.

Like RabbitMQ's ``rabbit_binary_generator:map_exception``: the error (the core's
``BrokerError`` or the wire's ``AmqpWireError``, both a :class:`ReplyError`) says whether the
spec makes it a channel or a connection exception; the reply text is ``NAME - explanation``
cut to 255 bytes; class and method ids name the method that failed (0, 0 when none did).
"""

from __future__ import annotations

from pamqp import commands

from ..reply_error import ReplyError


def close_for(error: ReplyError, class_id: int = 0, method_id: int = 0,
              force_connection: bool = False):
    """The close method to send, and whether it closes the whole connection."""
    text = _shortstr_text(f"{error.name} - {error.text}")
    if error.connection_level or force_connection:
        return commands.Connection.Close(reply_code=error.code, reply_text=text,
                                         class_id=class_id, method_id=method_id), True
    return commands.Channel.Close(reply_code=error.code, reply_text=text,
                                  class_id=class_id, method_id=method_id), False


def _shortstr_text(text: str) -> str:
    """As ``rabbit_binary_generator:amqp_exception_explanation``: over 255 bytes, the first
    252 and "..."."""
    raw = text.encode()
    if len(raw) <= 255:
        return text
    return raw[:252].decode("utf-8", "ignore") + "..."
