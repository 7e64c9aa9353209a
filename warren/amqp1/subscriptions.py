"""Durable topic subscriptions over AMQP 1.0, as ActiveMQ serves them to Qpid JMS.

A receiver from a topic (``topic://``, ``/topic/``, ``/exchange/``, a bare name with the
``topic`` capability) whose source asks for a durable terminus (configuration or
unsettled-state) is a durable subscription named by its link name, for its container id (JMS's
client id). Its queue is the core's (``broker/subscriptions.py``, shared with STOMP's durable
subscriptions and listed by the console): durable, bound to the topic, kept while the
subscriber is away, admitting only what its selector matches. Detaching without ``closed``
(Qpid JMS closing the consumer) keeps it; a ``closed`` detach (JMS's unsubscribe, which Qpid
JMS sends after attaching with no source) deletes it. An attach with no source resumes the
subscription of that link name, answered with its source, or is refused with
``amqp:not-found`` (ActiveMQ's "Unknown subscription link"). A new topic or selector for the
same name replaces the subscription, as JMS says, unless a receiver is on it.
"""

from __future__ import annotations

from ..broker.queue import Queue
from ..broker.subscriptions import DURABLE_SUBSCRIPTION_ARGUMENT, describe
from ..amqp1_message.codec import Composite, Symbol
from .errors import LinkError
from .owner import NodeOwner

#: terminus durability unsettled-state, and the expiry policy of a kept subscription
UNSETTLED_STATE = 2
NEVER = Symbol("never")


def queue_name(container_id: str, link_name: str) -> str:
    return f"amqp1-subscription-{container_id}-{link_name}"


def subscription(conn: NodeOwner, link_name: str, source: Composite,
                 selector: str | None) -> tuple[Queue, bool]:
    """The subscription's queue, and whether it was made now (it must then be bound)."""
    vhost = conn.vhost
    name = queue_name(conn.container_id, link_name)
    about = describe(conn.container_id, link_name, str(source.address), selector)
    queue = vhost.queues.get(name)
    if queue is not None:
        queue.check_access(conn)
        was = queue.arguments.get(DURABLE_SUBSCRIPTION_ARGUMENT)
        if not isinstance(was, dict) or (was.get("destination"), was.get("selector") or "") \
                == (about["destination"], about["selector"]):
            return queue, False
        if len(queue.consumers):
            raise LinkError("amqp:resource-locked", "Durable consumer is in use")
        conn.broker.check(conn.user, conn.vhost.name, "configure", "queue", name)
        vhost.delete_queue(name, connection=conn)
    conn.broker.check(conn.user, conn.vhost.name, "configure", "queue", name)
    queue = vhost.declare_queue(name, durable=True, auto_delete=False,
                                arguments={DURABLE_SUBSCRIPTION_ARGUMENT: about},
                                connection=conn)
    return queue, True


def resumed(conn: NodeOwner, link_name: str) -> tuple[Queue, Composite]:
    """The subscription an attach without a source names, and the source to answer with."""
    queue = conn.vhost.queues.get(queue_name(conn.container_id, link_name))
    about = queue.arguments.get(DURABLE_SUBSCRIPTION_ARGUMENT) if queue is not None else None
    if queue is None or not isinstance(about, dict):
        raise LinkError("amqp:not-found", f"Unknown subscription link: {link_name}")
    queue.check_access(conn)
    return queue, Composite("source", address=about.get("destination"),
                            durable=UNSETTLED_STATE, expiry_policy=NEVER,
                            distribution_mode=Symbol("copy"))


def unsubscribe(queue: Queue) -> None:
    """A closed detach of the subscription's link: the subscription ends."""
    vhost = queue.vhost
    if not queue.deleted and vhost.queues.get(queue.name) is queue:
        vhost.delete_queue(queue.name, reason="unsubscribed")
