"""Durable topic subscriptions (JMS, ActiveMQ's STOMP ``activemq.subscriptionName``) as queues.

A durable subscription is a durable queue bound to the topic that keeps collecting while its
subscriber is away. The front end that creates one records what it is in the queue's
:data:`DURABLE_SUBSCRIPTION_ARGUMENT` (client id, subscription name, destination, selector);
the argument is stored with the queue's definition, so the subscription is still known as one
after a restart, and AMQP's redeclare does not check it (RabbitMQ ignores arguments it does
not know). The console and the API list subscriptions from it (:func:`durable_subscriptions`)
the way ActiveMQ's console lists "Durable Topic Subscribers", without knowing any front end.
Its selector is the queue's filter (:func:`subscription_filter`): while the subscriber is away
only matching messages accumulate, as in ActiveMQ, instead of ones nobody will ever take.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .jms import message_lookup
from ..model.message import Message
from .selector import Selector, SelectorError

__all__ = ["DURABLE_SUBSCRIPTION_ARGUMENT", "describe", "durable_subscriptions",
           "subscription_filter"]

DURABLE_SUBSCRIPTION_ARGUMENT = "x-durable-subscription"


def describe(client_id: str | None, name: str, destination: str,
             selector: str | None) -> dict[str, Any]:
    """The argument value recording one durable subscription."""
    return {"client-id": client_id or "", "name": name, "destination": destination,
            "selector": selector or ""}


def subscription_filter(arguments: dict[str, Any]) -> Callable[[Message], bool] | None:
    """What a durable subscription's queue admits: the messages its selector matches (JMS,
    and ActiveMQ: a message the subscription's selector rejects is not kept for it), or None
    for every message. A selector that no longer parses (it was checked when the subscription
    was made) admits everything rather than losing messages."""
    about = arguments.get(DURABLE_SUBSCRIPTION_ARGUMENT)
    text = about.get("selector") if isinstance(about, dict) else None
    if not text or not isinstance(text, str):
        return None
    try:
        selector = Selector.parse(text)
    except SelectorError:
        return None
    if "JMSDestination" in selector.identifiers:
        return None     # named in the front end's spelling: its consumer filters instead
    return lambda message: selector.matches(message_lookup(message))


def durable_subscriptions(vhosts: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per durable subscription queue of *vhosts*: what it is, active or not, and the
    messages it holds (ready and delivered but unacked)."""
    rows = []
    for vh in vhosts:
        for q in sorted(vh.queues.values(), key=lambda q: q.name):
            about = q.arguments.get(DURABLE_SUBSCRIPTION_ARGUMENT)
            if not isinstance(about, dict):
                continue
            rows.append({
                "vhost": vh.name, "queue": q.name,
                "client_id": str(about.get("client-id", "")),
                "subscription_name": str(about.get("name", "")),
                "destination": str(about.get("destination", "")),
                "selector": str(about.get("selector", "")) or None,
                "active": q.consumer_count > 0, "consumers": q.consumer_count,
                "messages": q.message_count + q.unacked,
                "messages_ready": q.message_count, "messages_unacknowledged": q.unacked,
            })
    return rows
