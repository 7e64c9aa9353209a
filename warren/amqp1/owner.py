"""What resolving a link's node (``termini.py``, ``subscriptions.py``) needs of the
connection the link is on: who is asking, in which vhost, under which container id.

A Protocol of its own so that those modules name it, and ``connection.py`` (which imports
them) implements it, with no import between them running upward, not even for annotations.
"""

from __future__ import annotations

from typing import Protocol

from ..broker.broker import Broker
from ..broker.publish import Publisher
from ..broker.users import User
from ..broker.vhost import VirtualHost


class NodeOwner(Protocol):
    """The connection as termini and subscriptions see it (``connection.Amqp1Connection``);
    it is also the exclusive owner of the queues it makes (``Queue.check_access``)."""

    broker: Broker
    vhost: VirtualHost          # the one the connection opened
    user: User
    publisher: Publisher        # the broker's, for this vhost and user
    container_id: str           # the client's, as JMS's client id
