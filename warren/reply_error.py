"""The shape every error meant for a client has: an AMQP reply code and name, and a text.

The AMQP 0-9-1 reply codes are the lingua franca of brokers (RabbitMQ's management API and STOMP
errors reuse their names), so both the core's errors (``model/errors.py``) and the AMQP wire's
own (``amqp/wire_errors.py``) carry them as data. This module sits below both and imports
nothing, so the core and the sans-I/O AMQP codec can share the shape without importing each
other; each front end maps a :class:`ReplyError` to its protocol in one place.
"""

from __future__ import annotations


class ReplyError(Exception):
    """An error with a reply for the client: ``code``/``name`` (AMQP), ``text`` (why).

    ``connection_level`` tells AMQP whether the spec makes it a connection exception."""

    code: int = 541
    name: str = "INTERNAL_ERROR"
    connection_level: bool = True

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def reply_text(self) -> str:
        """``NAME - explanation`` as RabbitMQ formats reply texts, cut to a shortstr."""
        return f"{self.name} - {self.text}"[:255]
