"""The anonymous terminus (ANONYMOUS-RELAY) as RabbitMQ 4 serves it, with python-qpid-proton's
reactor and blocking APIs: offered in the open, a sender with no target address routes each
message by its ``to`` (``/queues/Q``, ``/exchanges/X/K``, ``/exchanges/X``), request/reply
answers through it, and a message it cannot route gets RabbitMQ 4's outcome: no or a bad
``to`` is rejected with ``amqp:precondition-failed``, a missing exchange with
``amqp:not-found`` (the link stays), a missing queue is released; a pre-settled one ends the
link with the error naming its delivery tag; an internal exchange ends the link."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests
from proton import Delivery, Endpoint, Message
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container, DynamicNodeProperties
from proton.utils import BlockingConnection, LinkDetached

#: how long a reactor test may run before it gives up (the broker answers in milliseconds)
GIVE_UP = 20


def v2(name: str) -> str:
    return quote(name, safe="")


def receive(receiver) -> Message:
    got = receiver.receive(timeout=30)
    if isinstance(got.body, memoryview):
        got.body = bytes(got.body)        # a view into proton's buffer, reused on accept
    receiver.accept()
    return got


def send(sender, message: Message):
    """Send and wait for the broker's outcome, whatever it is."""
    return sender.send(message, error_states=[])


def test_open_offers_anonymous_relay_only(broker):
    class Opened(MessagingHandler):
        offered = None

        def on_start(self, event):
            self.timer = event.container.schedule(GIVE_UP, self)
            event.container.connect(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                    allowed_mechs="PLAIN", desired_capabilities="ANONYMOUS-RELAY")

        def on_connection_opened(self, event):
            self.offered = event.connection.remote_offered_capabilities
            self.timer.cancel()
            event.connection.close()

        def on_timer_task(self, event):
            event.container.stop()

    opened = Opened()
    Container(opened).run()
    assert opened.offered is not None and list(opened.offered) == ["ANONYMOUS-RELAY"]


def test_to_a_queue_and_to_exchanges(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.direct", routing_key=unique)
    channel.queue_bind(unique, "amq.direct", routing_key="")
    sender = amqp1.create_sender(None)
    for to, body in ((f"/queues/{v2(unique)}", b"queue"),
                     (f"/exchanges/amq.direct/{v2(unique)}", b"exchange and key"),
                     # RabbitMQ 4: the empty key, not the subject (unlike a link's target)
                     ("/exchanges/amq.direct", b"exchange alone")):
        delivery = send(sender, Message(address=to, body=body, subject="not-the-key"))
        assert delivery.remote_state == Delivery.ACCEPTED, to
    receiver = amqp1.create_receiver(f"/queues/{v2(unique)}")
    assert [receive(receiver).body for _ in range(3)] == [
        b"queue", b"exchange and key", b"exchange alone"]


def test_request_reply_blocking(broker, amqp1, channel, unique):
    """The requester reads a dynamic queue; the server answers through its anonymous sender
    to the request's reply_to (proton's sync_client.py and server.py)."""
    channel.queue_declare(unique)
    replies = amqp1.create_receiver(None, dynamic=True)
    reply_to = replies.link.remote_source.address
    assert reply_to.startswith("/queues/amq.gen-")
    amqp1.create_sender(f"/queues/{v2(unique)}").send(
        Message(body="ping", reply_to=reply_to, correlation_id="c-1"))
    server = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                                allowed_mechs="PLAIN", timeout=30)
    try:
        request = receive(server.create_receiver(f"/queues/{v2(unique)}"))
        delivery = send(server.create_sender(None), Message(
            address=request.reply_to, body=request.body.upper(),
            correlation_id=request.correlation_id))
        assert delivery.remote_state == Delivery.ACCEPTED
    finally:
        server.close()
    reply = receive(replies)
    assert (reply.body, reply.correlation_id) == ("PING", "c-1")


def test_request_reply_reactor(broker, unique):
    """proton's server.py and client.py in one container: the server starts only when the
    broker offers ANONYMOUS-RELAY, and answers through its anonymous sender."""
    url = f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}"
    requests = ["one", "two", "three"]

    class ServerAndClient(MessagingHandler):
        def __init__(self):
            super().__init__()
            self.answers: list[tuple[str, str]] = []
            self.refused = None

        def on_start(self, event):
            container = event.container
            self.timer = container.schedule(GIVE_UP, self)
            self.server_conn = container.connect(url, allowed_mechs="PLAIN",
                                                 desired_capabilities="ANONYMOUS-RELAY")
            self.client_conn = container.connect(url, allowed_mechs="PLAIN")
            # a queue declared when missing (RabbitMQ 3's v1 form: proton's "examples")
            self.server_in = container.create_receiver(self.server_conn, f"/queue/{unique}")
            self.reply = container.create_sender(self.server_conn, None)
            self.requests = container.create_sender(self.client_conn, f"/queue/{unique}")
            self.replies = container.create_receiver(
                self.client_conn, None, dynamic=True,
                options=DynamicNodeProperties({"lifetime-policy": "delete-on-close"}))

        def on_connection_opened(self, event):
            if event.connection == self.server_conn:
                offered = event.connection.remote_offered_capabilities or []
                if "ANONYMOUS-RELAY" not in offered:
                    self.refused = "no ANONYMOUS-RELAY"
                    self.stop(event)

        def on_link_opened(self, event):
            if event.receiver == self.replies:
                self.next_request()

        def next_request(self):
            self.requests.send(Message(body=requests[len(self.answers)],
                                       reply_to=self.replies.remote_source.address,
                                       correlation_id=len(self.answers)))

        def on_message(self, event):
            if event.receiver == self.server_in:
                request = event.message
                self.reply.send(Message(address=request.reply_to, body=request.body.upper(),
                                        correlation_id=request.correlation_id))
                return
            self.answers.append((event.message.correlation_id, event.message.body))
            if len(self.answers) < len(requests):
                self.next_request()
            else:
                self.stop(event)

        def on_link_error(self, event):
            self.refused = str(event.link.remote_condition)
            self.stop(event)

        def stop(self, event):
            self.timer.cancel()
            self.server_conn.close()
            self.client_conn.close()

        def on_timer_task(self, event):
            self.refused = self.refused or "timed out"
            event.container.stop()

    handler = ServerAndClient()
    Container(handler).run()
    assert handler.refused is None
    assert handler.answers == [(0, "ONE"), (1, "TWO"), (2, "THREE")]


@pytest.mark.parametrize("to, condition, description", [
    (None, "amqp:precondition-failed", "anonymous terminus requires 'to' address to be set"),
    ("nowhere", "amqp:precondition-failed", "bad 'to' address string: nowhere"),
    ("/queue/q", "amqp:precondition-failed", "bad 'to' address string: /queue/q"),
    ("/queues/", "amqp:precondition-failed", "bad 'to' address string: /queues/"),
    ("/exchanges/", "amqp:precondition-failed", "bad 'to' address string: /exchanges/"),
    ("/exchanges/amq.default/k", "amqp:precondition-failed",
     "bad 'to' address string: /exchanges/amq.default/k"),
    ("/exchanges/amq.direct/a/b", "amqp:precondition-failed",
     "bad 'to' address string: /exchanges/amq.direct/a/b"),
    ("/queues/bad%zzescape", "amqp:precondition-failed",
     "bad 'to' address string: /queues/bad%zzescape"),
    ("/exchanges/no-such-exchange/k", "amqp:not-found",
     "no exchange 'no-such-exchange' in vhost '/'"),
])
def test_bad_to_is_rejected_and_the_link_stays(broker, amqp1, channel, unique, to, condition,
                                               description):
    channel.queue_declare(unique)
    sender = amqp1.create_sender(None)
    delivery = send(sender, Message(address=to, body=b"refused"))
    assert delivery.remote_state == Delivery.REJECTED
    assert (delivery.remote.condition.name, delivery.remote.condition.description) == (
        condition, description)
    # the link goes on: the next message is routed, and nothing else reached the queue
    assert send(sender, Message(address=f"/queues/{v2(unique)}", body=b"kept")
                ).remote_state == Delivery.ACCEPTED
    assert channel.queue_declare(unique, passive=True).method.message_count == 1
    receiver = amqp1.create_receiver(f"/queues/{v2(unique)}")
    assert receive(receiver).body == b"kept"
    assert "Traceback" not in broker.log()


@pytest.mark.parametrize("to", ["/queues/{}", "/exchanges/amq.direct/{}"])
def test_unroutable_to_is_released(amqp1, unique, to):
    """A queue that does not exist is no error for a to (unlike a link's target): the
    message goes nowhere, and is released as any unroutable one."""
    sender = amqp1.create_sender(None)
    delivery = send(sender, Message(address=to.format(v2(unique)), body=b"nobody"))
    assert delivery.remote_state == Delivery.RELEASED


def _closed_with(amqp1, sender):
    """The condition the broker detached *sender* with (the blocking API raises it)."""
    with pytest.raises(LinkDetached) as caught:
        amqp1.wait(lambda: sender.link.state & Endpoint.REMOTE_CLOSED, timeout=30)
    return caught.value.link.remote_condition


def test_presettled_bad_to_ends_the_link_naming_the_delivery(amqp1):
    sender = amqp1.create_sender(None, options=AtMostOnce())
    delivery = sender.send(Message(body=b"no to"))
    condition = _closed_with(amqp1, sender)
    assert (condition.name, condition.description) == (
        "amqp:precondition-failed", "anonymous terminus requires 'to' address to be set")
    tag = delivery.tag.encode() if isinstance(delivery.tag, str) else delivery.tag
    assert {k: bytes(v) for k, v in condition.info.items()} == {"delivery-tag": tag}
    # the connection goes on
    again = send(amqp1.create_sender(None), Message(address="/exchanges/amq.direct/nobody",
                                                    body=b"x"))
    assert again.remote_state == Delivery.RELEASED


def test_internal_exchange_ends_the_link(broker, amqp1, channel, unique):
    channel.exchange_declare(unique, "direct", internal=True)
    sender = amqp1.create_sender(None)
    sender.link.send(Message(address=f"/exchanges/{v2(unique)}/k", body=b"internal"))
    condition = _closed_with(amqp1, sender)
    assert (condition.name, condition.description) == (
        "amqp:unauthorized-access",
        f"forbidden to publish to internal exchange '{unique}' in vhost '/'")
    assert "Traceback" not in broker.log()


def test_no_write_permission_on_the_to_exchange_ends_the_session(broker, unique):
    """RabbitMQ 4 checks the write permission first, and a refusal ends the session."""
    api = requests.Session()
    api.auth = ("guest", "guest")
    user = v2(unique)
    assert api.put(f"{broker.http_url}/api/users/{user}",
                   json={"password": "pw", "tags": ""}).ok
    assert api.put(f"{broker.http_url}/api/permissions/%2F/{user}",
                   json={"configure": ".*", "write": "^$", "read": ".*"}).ok
    conn = BlockingConnection(f"amqp://127.0.0.1:{broker.amqp_port}", user=unique,
                              password="pw", allowed_mechs="PLAIN", timeout=30)
    try:
        sender = conn.create_sender(None)
        sender.link.send(Message(address="/exchanges/amq.direct/k", body=b"refused"))
        session = sender.link.session
        conn.wait(lambda: session.state & Endpoint.REMOTE_CLOSED, timeout=30)
        assert session.remote_condition.name == "amqp:unauthorized-access"
        assert session.remote_condition.description == (
            f"write access to exchange 'amq.direct' in vhost '/' refused for user '{unique}'")
    finally:
        conn.close()
    assert "Traceback" not in broker.log()
