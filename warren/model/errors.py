"""Typed errors the core raises; each front end maps them to its protocol in one place.

The core never knows AMQP reply codes by number in its logic, but the AMQP 0-9-1 codes are the
lingua franca of brokers (RabbitMQ's management API and STOMP errors reuse their names), so each
class carries its AMQP code and name as data (the shape is ``reply_error.ReplyError``), the way
``rabbit_misc:protocol_error(not_found,…)`` carries an atom. ``amqp/errors.py``,
``stomp/errors.py`` and ``mqtt/errors.py`` decide what a client sees; ``connection_level`` tells
AMQP whether the spec makes it a connection exception. Errors of the AMQP wire itself (frames,
method syntax, channel numbers) are not the core's: they live in ``amqp/wire_errors.py``.
"""

from __future__ import annotations

from ..reply_error import ReplyError


class BrokerError(ReplyError):
    """Base of every error the core raises on purpose. ``text`` is for the client."""


class ConnectionForced(BrokerError):
    code, name, connection_level = 320, "CONNECTION_FORCED", True


class AccessRefused(BrokerError):
    code, name, connection_level = 403, "ACCESS_REFUSED", False


class NotFound(BrokerError):
    code, name, connection_level = 404, "NOT_FOUND", False


class ResourceLocked(BrokerError):
    code, name, connection_level = 405, "RESOURCE_LOCKED", False


class PreconditionFailed(BrokerError):
    code, name, connection_level = 406, "PRECONDITION_FAILED", False


class CommandInvalid(BrokerError):
    code, name, connection_level = 503, "COMMAND_INVALID", True


class ResourceError(BrokerError):
    code, name, connection_level = 506, "RESOURCE_ERROR", True


class NotAllowed(BrokerError):
    code, name, connection_level = 530, "NOT_ALLOWED", True


class NotImplemented_(BrokerError):
    code, name, connection_level = 540, "NOT_IMPLEMENTED", True


class InternalError(BrokerError):
    code, name, connection_level = 541, "INTERNAL_ERROR", True
