"""Errors of the AMQP 0-9-1 wire itself: bad frames, malformed or unknown methods, frames out
of place, channel numbers misused.

They belong to the codec and the connection, not to the core (which knows no frames), and they
import only the shared :class:`~warren.reply_error.ReplyError` shape, so ``framing.py`` stays
sans-I/O and core-free like the STOMP and MQTT codecs. Each is a connection exception in the
spec (a 5xx hard error); ``amqp/errors.py`` maps them to connection.close as it maps the core's
:class:`~warren.model.errors.BrokerError`.
"""

from __future__ import annotations

from ..reply_error import ReplyError


class AmqpWireError(ReplyError):
    """A violation of the AMQP 0-9-1 framing or method grammar. ``text`` is for the client."""

    code, name, connection_level = 501, "FRAME_ERROR", True


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
