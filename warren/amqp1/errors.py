"""AMQP 1.0 errors on their level: a link's (detach), the connection's (close), and the
core's typed errors as the conditions RabbitMQ 4 gives them."""

from __future__ import annotations

from typing import Any

from ..model.errors import BrokerError
from ..amqp1_message.codec import Composite, Symbol


class LinkError(Exception):
    """Ends one link with an AMQP error condition (and the error's info map, if any)."""

    def __init__(self, condition: str, description: str, info: Any = None) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description
        self.info = info


class SessionError(Exception):
    """Ends the session (``end`` with the condition) and its links; the connection stays."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class ConnectionError_(Exception):
    """Closes the connection with an AMQP error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def error(condition: str, description: str, info: Any = None) -> Composite:
    return Composite("error", condition=Symbol(condition), description=description, info=info)


#: the core's errors (their AMQP 0-9-1 codes) as AMQP 1.0 conditions, as RabbitMQ 4 maps them
CONDITIONS = {403: "amqp:unauthorized-access", 404: "amqp:not-found",
              405: "amqp:resource-locked", 406: "amqp:precondition-failed"}


def condition_of(e: BrokerError) -> str:
    return CONDITIONS.get(getattr(e, "code", 0), "amqp:internal-error")
