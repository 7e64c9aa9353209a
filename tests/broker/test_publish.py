"""The core publish pipeline (warren/broker/publish.py) driven in-process, as a bridge would.

A real Broker on a fake clock; no front end. Network tests of the same rules go through real
clients in tests/amqp/test_exchanges.py, test_permissions.py and tests/queues/test_replyto.py.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from warren.amqp.properties import CODEC
from warren.broker.broker import Broker
from warren.model.errors import AccessRefused, NotFound, PreconditionFailed
from warren.model.message import Message, Properties
from warren.broker.replyto import REPLY_TO, direct_reply_to
from tests.deferreds import fired


@pytest.fixture
def broker() -> Broker:
    b = Broker(clock=Clock(), codec=CODEC)
    b.ensure_defaults()
    return b


def message(exchange: str, key: str, **props) -> Message:
    return Message(exchange, key, b"body", codec=CODEC, props=Properties(**props))


def test_internal_publisher_needs_no_user(broker):
    vh = broker.vhost("/")
    q = vh.declare_queue("q")
    pub = broker.publisher("/", None)
    routed = pub.publish(pub.exchange(""), message("", "q"))
    assert routed.queues == [q] and not routed.stored and not routed.unroutable
    assert q.message_count == 1


def test_unroutable_is_what_a_mandatory_publisher_gets_back(broker):
    pub = broker.publisher("/", None)
    assert pub.publish(pub.exchange("amq.direct"), message("amq.direct", "none")).unroutable


def test_checks_in_rabbitmq_order(broker):
    vh = broker.vhost("/")
    vh.declare_exchange("int", "fanout", internal=True)
    broker.add_user("reader", "pw", persist=False)
    broker.set_permissions("reader", "/", ".*", "^$", ".*", persist=False)
    reader = broker.publisher("/", broker.users["reader"])
    with pytest.raises(NotFound, match="no exchange 'nope' in vhost '/'"):
        reader.exchange("nope")
    with pytest.raises(AccessRefused, match="access to exchange 'int' in vhost '/' refused for user 'reader'"):
        reader.exchange("int")
    internal = broker.publisher("/", None)
    with pytest.raises(AccessRefused) as e:
        internal.exchange("int")
    assert e.value.text == "cannot publish to internal exchange 'int' in vhost '/'"


def test_direct_reply_to_for_any_publisher(broker):
    class Requester:
        tag, no_ack = "ctag", True
        got: list = []

        def deliver(self, queue, entry):
            self.got.append(entry.message)

    requester = Requester()
    sub = direct_reply_to(broker).subscribe(requester)
    vh = broker.vhost("/")
    vh.declare_queue("rpc")
    pub = broker.publisher("/", None)
    with pytest.raises(PreconditionFailed, match="fast reply consumer does not exist"):
        pub.publish(pub.exchange(""), message("", "rpc", reply_to=REPLY_TO))
    pub.publish(pub.exchange(""), message("", "rpc", reply_to=REPLY_TO), sub)
    request = fired(vh.queue("rpc").get_later(True)).message
    assert request.properties.reply_to == sub.address
    routed = pub.publish(pub.exchange(""), message("", request.properties.reply_to))
    assert routed.queues == [sub] and len(requester.got) == 1
