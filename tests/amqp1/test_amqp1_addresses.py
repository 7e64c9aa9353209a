"""AMQP 1.0 addresses beyond RabbitMQ 4's v2: RabbitMQ 3's v1 forms (``/queue/``, ``/topic/``,
``/exchange/``, bare names), ActiveMQ's (``queue://``, ``topic://``, the ``queue``/``topic``
capabilities Qpid JMS sends), and dynamic nodes for request/reply, with python-qpid-proton."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
import requests
from proton import Data, Message, symbol
from proton.reactor import LinkOption
from proton.utils import BlockingConnection, LinkDetached

from tests.polling import eventually


class Terminus(LinkOption):
    """The link's own terminus (a sender's target, a receiver's source): capabilities and
    durability, as Qpid JMS and durable clients set them."""

    def __init__(self, capabilities: tuple[str, ...] = (), durable: bool = False) -> None:
        self.capabilities = capabilities
        self.durable = durable

    def apply(self, link) -> None:
        terminus = link.target if link.is_sender else link.source
        if self.capabilities:
            terminus.capabilities.put_array(False, Data.SYMBOL)
            terminus.capabilities.enter()
            for capability in self.capabilities:
                terminus.capabilities.put_symbol(symbol(capability))
            terminus.capabilities.exit()
        if self.durable:
            terminus.durability = terminus.CONFIGURATION


def api(broker, path: str):
    return requests.get(f"{broker.http_url}/api/{path}", auth=("guest", "guest"))


def queue_info(broker, name: str):
    reply = api(broker, f"queues/%2F/{quote(name, safe='')}")
    return reply.json() if reply.status_code == 200 else None


def receive(receiver) -> bytes:
    got = receiver.receive(timeout=30)
    receiver.accept()
    return bytes(got.body)


@pytest.mark.parametrize("address, capabilities, durable, declared_durable", [
    ("/queue/{}", (), False, False),          # RabbitMQ 3: as the terminus asks
    ("/queue/{}", (), True, True),
    ("{}", (), False, False),                 # a bare name is /queue/ (RabbitMQ 3)
    ("{}", ("queue",), False, True),          # Qpid JMS's queue: ActiveMQ's queues are durable
    ("queue://{}", (), False, True),
])
def test_queue_forms_declare_a_missing_queue(broker, amqp1, unique, address, capabilities,
                                             durable, declared_durable):
    sender = amqp1.create_sender(address.format(unique),
                                 options=Terminus(capabilities, durable))
    sender.send(Message(body=b"declared"))
    info = queue_info(broker, unique)
    assert info is not None and info["durable"] is declared_durable
    assert not info["exclusive"] and not info["auto_delete"]
    receiver = amqp1.create_receiver(address.format(unique),
                                     options=Terminus(capabilities, durable))
    assert receive(receiver) == b"declared"


def test_queue_form_uses_an_existing_queue_as_it_is(broker, amqp1, channel, unique):
    channel.queue_declare(unique, durable=True, arguments={"x-max-length": 5})
    amqp1.create_sender(f"/queue/{unique}").send(Message(body=b"kept"))
    assert receive(amqp1.create_receiver(unique)) == b"kept"
    assert queue_info(broker, unique)["durable"] is True


@pytest.mark.parametrize("source, target", [
    ("/topic/{}.k", "/topic/{}.k"),
    ("/topic/{}.*", "/exchange/amq.topic/{}.k"),
    ("/exchange/amq.direct/{}", "/exchange/amq.direct/{}"),
    ("topic://{}.k", "/topic/{}.k"),
    ("{}.k", "topic://{}.k"),                 # a bare name with the topic capability
])
def test_receiver_from_an_exchange_gets_a_queue_of_its_own(broker, amqp1, unique, source,
                                                           target):
    options = Terminus(("topic",)) if not source.startswith("/") and "://" not in source \
        else None
    receiver = amqp1.create_receiver(source.format(unique), options=options)
    amqp1.create_sender(target.format(unique)).send(Message(body=b"routed"))
    assert receive(receiver) == b"routed"


def test_fanout_exchange_without_a_key(amqp1, channel, unique):
    channel.exchange_declare(unique, "fanout")
    receiver = amqp1.create_receiver(f"/exchange/{unique}")
    channel.basic_publish(unique, "any", b"fanned")
    assert receive(receiver) == b"fanned"


def test_a_receivers_own_queue_goes_with_it(broker, amqp1, unique):
    receiver = amqp1.create_receiver(f"/topic/{unique}")

    def bound():
        bindings = api(broker, "exchanges/%2F/amq.topic/bindings/source").json()
        return [b["destination"] for b in bindings if b["routing_key"] == unique]
    (name,) = eventually(bound, "the receiver's queue bound")
    assert name.startswith("amq.gen-")
    info = queue_info(broker, name)
    assert info["exclusive"] and not info["durable"]
    receiver.close()
    eventually(lambda: queue_info(broker, name) is None, "the queue deleted")


def test_dynamic_receiver_for_request_reply(broker, amqp1, channel, unique):
    replies = amqp1.create_receiver(None, dynamic=True)
    address = replies.link.remote_source.address
    assert address.startswith("/queues/amq.gen-")
    name = unquote(address[len("/queues/"):])
    # a responder over 0-9-1 answers to the reply queue by name, another 1.0 client by address
    channel.basic_publish("", name, b"reply 1")
    other = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                               allowed_mechs="PLAIN", timeout=30)
    other.create_sender(address).send(Message(body=b"reply 2"))
    # the queue is this connection's alone
    with pytest.raises(LinkDetached) as caught:
        other.create_receiver(address)
    assert "amqp:resource-locked" in str(caught.value)
    other.close()
    assert [receive(replies), receive(replies)] == [b"reply 1", b"reply 2"]
    assert queue_info(broker, name)["exclusive"]
    replies.close()
    eventually(lambda: queue_info(broker, name) is None, "the dynamic queue deleted")


def test_dynamic_target_is_a_queue_of_the_link(broker, amqp1):
    sender = amqp1.create_sender(None, options=DynamicTarget())
    address = sender.link.remote_target.address
    assert address.startswith("/queues/amq.gen-")
    name = unquote(address[len("/queues/"):])
    sender.send(Message(body=b"to myself"))
    eventually(lambda: queue_info(broker, name)["messages"] == 1, "the message queued")
    sender.close()
    eventually(lambda: queue_info(broker, name) is None, "the dynamic queue deleted")


class DynamicTarget(LinkOption):
    def apply(self, link) -> None:
        link.target.address = None
        link.target.dynamic = True


def test_dynamic_queues_go_with_the_connection(broker, unique):
    conn = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)
    address = conn.create_receiver(None, dynamic=True).link.remote_source.address
    name = unquote(address[len("/queues/"):])
    assert queue_info(broker, name) is not None
    conn.close()
    eventually(lambda: queue_info(broker, name) is None, "the dynamic queue deleted")


@pytest.mark.parametrize("address, condition", [
    ("/exchange/{}-missing/k", "amqp:not-found"),     # receiver from a missing exchange
    ("/topic/a/b", "amqp:invalid-field"),             # v1 names hold no '/'
    ("/queue", "amqp:invalid-field"),                 # sends by subject: no queue to read
    ("/queue/amq.{}", "amqp:unauthorized-access"),    # amq. names are the broker's
    ("/exchanges/amq.direct/k", "amqp:invalid-field"),  # v2: receivers read queues only
])
def test_bad_receiver_addresses(amqp1, unique, address, condition):
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_receiver(address.format(unique.rsplit(".", 1)[1]))  # no '/' in it
    assert condition in str(caught.value)


def test_send_by_subject_through_the_default_exchange(amqp1, channel, unique):
    channel.queue_declare(unique)
    amqp1.create_sender("/queue").send(Message(body=b"by subject", inferred=True,
                                                         subject=unique))
    assert channel.basic_get(unique, auto_ack=True)[2] == b"by subject"


class DurableTopic(LinkOption):
    """Qpid JMS's durable subscriber: a topic source, durable unsettled-state, never expiring."""

    def apply(self, link) -> None:
        link.source.capabilities.put_array(False, Data.SYMBOL)
        link.source.capabilities.enter()
        link.source.capabilities.put_symbol(symbol("topic"))
        link.source.capabilities.exit()
        link.source.durability = link.source.DELIVERIES   # unsettled-state
        link.source.expiry_policy = link.source.EXPIRE_NEVER


def test_durable_subscription_keeps_collecting_while_away(broker, unique):
    url = f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}"
    sub = f"{unique}-sub"
    subscriber = BlockingConnection(url, allowed_mechs="PLAIN", timeout=30,
                                    container_id=f"{unique}-client")
    subscriber.create_receiver(f"{unique}.news", name=sub, options=DurableTopic())
    subscriber.close()                          # away: the subscription stays
    publisher = BlockingConnection(url, allowed_mechs="PLAIN", timeout=30)
    publisher.create_sender(f"topic://{unique}.news").send(Message(body=b"while away"))
    publisher.close()
    queue = f"amqp1-subscription-{unique}-client-{sub}"
    info = queue_info(broker, queue)
    assert info["durable"] and info["messages"] == 1
    # back under the same client id: resumed by link name with no source (what Qpid JMS
    # sends before unsubscribing), then unsubscribed by a closed detach
    subscriber = BlockingConnection(url, allowed_mechs="PLAIN", timeout=30,
                                    container_id=f"{unique}-client")
    resumed = subscriber.create_receiver(None, name=sub)
    assert resumed.link.remote_source.address == f"{unique}.news"
    assert receive(resumed) == b"while away"
    resumed.close()
    subscriber.close()
    eventually(lambda: queue_info(broker, queue) is None, "the subscription deleted")


def test_durable_subscription_in_use_is_not_replaced(broker, unique):
    url = f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}"
    first, second = (BlockingConnection(url, allowed_mechs="PLAIN", timeout=30,
                                        container_id=f"{unique}-client") for _ in range(2))
    first.create_receiver(f"{unique}.a", name="sub", options=DurableTopic())
    # JMS: another topic for the same subscription replaces it, but not while it is consumed
    with pytest.raises(LinkDetached) as caught:
        second.create_receiver(f"{unique}.b", name="sub", options=DurableTopic())
    assert "amqp:resource-locked" in str(caught.value)
    assert "Durable consumer is in use" in str(caught.value)
    first.close()
    queue = f"amqp1-subscription-{unique}-client-sub"
    eventually(lambda: queue_info(broker, queue)["consumers"] == 0, "the first receiver gone")
    second.create_receiver(f"{unique}.b", name="sub", options=DurableTopic()).close()
    second.close()


def test_resuming_an_unknown_subscription_is_not_found(amqp1, unique):
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_receiver(None, name=f"{unique}-nothing")
    assert "amqp:not-found" in str(caught.value)
    assert f"Unknown subscription link: {unique}-nothing" in str(caught.value)


def test_zz_no_traceback(broker):
    assert "Traceback" not in broker.log()
