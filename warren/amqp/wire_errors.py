"""Errors of the AMQP 0-9-1 wire itself: bad frames, malformed or unknown methods, frames out
of place, channel numbers misused.

They belong to the codec and the connection, not to the core (which knows no frames), and they
import nothing, so ``framing.py`` stays sans-I/O and core-free like the STOMP and MQTT codecs.
Each is a connection exception in the spec (a 5xx hard error); ``amqp/errors.py`` maps them to
connection.close next to the core's :class:`~warren.broker.errors.BrokerError`, which has the
same shape (``code``, ``name``, ``text``, ``connection_level``).
"""

from __future__ import annotations


class AmqpWireError(Exception):
    """A violation of the AMQP 0-9-1 framing or method grammar. ``text`` is for the client."""

    code: int = 501
    name: str = "FRAME_ERROR"
    connection_level: bool = True

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def reply_text(self) -> str:
        """``NAME - explanation`` as RabbitMQ formats reply texts, cut to a shortstr."""
        return f"{self.name} - {self.text}"[:255]


class FrameError(AmqpWireError):
    """Framing lost (bad size, bad end octet, unknown frame type): nothing more can be read."""

    code, name = 501, "FRAME_ERROR"


class SyntaxError_(AmqpWireError):
    """A method or property list that does not decode."""

    code, name = 502, "SYNTAX_ERROR"


class UnknownMethod(AmqpWireError):
    """A class/method id pair the spec does not define."""

    code, name = 503, "COMMAND_INVALID"


class ChannelError(AmqpWireError):
    """A channel number used out of turn (before open, twice opened, beyond channel_max)."""

    code, name = 504, "CHANNEL_ERROR"


class UnexpectedFrame(AmqpWireError):
    """A frame type out of place (a body where a method belongs, content on channel 0)."""

    code, name = 505, "UNEXPECTED_FRAME"
