"""AMQP 1.0 local transactions with python-qpid-proton's transaction controller: messages sent
in a transaction are published only when it commits, acceptances of received messages take
effect then; a rollback drops the one and gives the other back; an unknown transaction id is
refused with ``amqp:transaction:unknown-id``."""

from __future__ import annotations

import pytest
from proton import Message
from proton.handlers import TransactionHandler
from proton.utils import BlockingConnection

from tests.amqp1.raw import Raw
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, encode_frame, encode_message


class Outcomes(TransactionHandler):
    """What the coordinator answered, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.transaction = None

    def on_transaction_declared(self, event) -> None:
        self.transaction = event.transaction
        self.events.append("declared")

    def on_transaction_committed(self, event) -> None:
        self.events.append("committed")

    def on_transaction_aborted(self, event) -> None:
        self.events.append("aborted")

    def on_transaction_declare_failed(self, event) -> None:
        self.events.append("declare failed")

    def on_transaction_commit_failed(self, event) -> None:
        self.events.append("commit failed")


def depth(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def declare(conn) -> Outcomes:
    outcomes = Outcomes()
    conn.container.declare_transaction(conn.conn, handler=outcomes)
    conn.wait(lambda: outcomes.events, timeout=30)
    assert outcomes.events == ["declared"]
    return outcomes


def discharge(conn, outcomes: Outcomes, commit: bool) -> None:
    before = len(outcomes.events)
    outcomes.transaction.commit() if commit else outcomes.transaction.abort()
    conn.wait(lambda: len(outcomes.events) > before, timeout=30)


def send(conn, outcomes: Outcomes, sender, body: bytes, durable: bool = False) -> None:
    delivery = outcomes.transaction.send(sender.link, Message(body=body, durable=durable))
    conn.wait(lambda: delivery.remote_state, timeout=30)     # the provisional outcome


def test_sends_are_published_on_commit(amqp1, channel, unique):
    channel.queue_declare(unique, durable=True)
    outcomes = declare(amqp1)
    sender = amqp1.create_sender(f"/queues/{unique}")
    send(amqp1, outcomes, sender, b"one", durable=True)
    send(amqp1, outcomes, sender, b"two", durable=True)
    assert depth(channel, unique) == 0             # held by the transaction
    discharge(amqp1, outcomes, commit=True)
    assert outcomes.events == ["declared", "committed"]
    assert depth(channel, unique) == 2


def test_sends_are_dropped_on_rollback(amqp1, channel, unique):
    channel.queue_declare(unique)
    outcomes = declare(amqp1)
    send(amqp1, outcomes, amqp1.create_sender(f"/queues/{unique}"), b"never")
    discharge(amqp1, outcomes, commit=False)
    assert outcomes.events == ["declared", "aborted"]
    assert depth(channel, unique) == 0


def test_acceptance_takes_effect_on_commit_not_on_rollback(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"m")
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    receiver.receive(timeout=30)
    outcomes = declare(amqp1)
    outcomes.transaction.accept(receiver.fetcher.unsettled[-1])
    discharge(amqp1, outcomes, commit=False)
    # rolled back: the acceptance never took effect (proton then releases the delivery
    # itself, so it comes again, redelivered: no failed delivery, so no delivery-count)
    again = receiver.receive(timeout=30)
    assert bytes(again.body) == b"m" and again.first_acquirer is False
    assert again.delivery_count == 0
    outcomes = declare(amqp1)
    outcomes.transaction.accept(receiver.fetcher.unsettled[-1])
    discharge(amqp1, outcomes, commit=True)
    receiver.close()
    eventually(lambda: depth(channel, unique) == 0, "the message acked")
    assert channel.basic_get(unique, auto_ack=True)[0] is None


def test_open_transaction_rolled_back_when_the_connection_closes(broker, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"held")
    conn = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)
    receiver = conn.create_receiver(f"/queues/{unique}")
    receiver.receive(timeout=30)
    outcomes = declare(conn)
    outcomes.transaction.accept(receiver.fetcher.unsettled[0])
    send(conn, outcomes, conn.create_sender(f"/queues/{unique}"), b"never")
    conn.close()
    method, _props, body = eventually(
        lambda: (lambda got: got if got[0] is not None else None)(
            channel.basic_get(unique, auto_ack=True)), "the message requeued")
    assert body == b"held" and method.redelivered
    assert depth(channel, unique) == 0             # the send was never published


def coordinator_message(body: Composite) -> bytes:
    return encode_message({"amqp_value": body})


@pytest.fixture
def raw(broker):
    """A raw client with a coordinator link (handle 0) on session 0."""
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin()
    raw.attach_sender(Composite("coordinator", capabilities=["amqp:local-transactions"]))
    return raw


def outcome(raw: Raw):
    frame = raw.frame()
    assert frame.performative.kind == "disposition" and frame.performative.settled
    return frame.performative.state


def test_discharge_of_an_unknown_transaction_is_rejected(raw):
    raw.transfer(0, 0, coordinator_message(Composite("discharge", txn_id=b"nope")))
    state = outcome(raw)
    assert state.kind == "rejected" and state.error.condition == "amqp:transaction:unknown-id"
    # declared ids work, once
    raw.transfer(0, 1, coordinator_message(Composite("declare")))
    txn_id = outcome(raw).txn_id
    raw.transfer(0, 2, coordinator_message(Composite("discharge", txn_id=txn_id)))
    assert outcome(raw).kind == "accepted"
    raw.transfer(0, 3, coordinator_message(Composite("discharge", txn_id=txn_id)))
    assert outcome(raw).error.condition == "amqp:transaction:unknown-id"


def test_coordinator_refuses_what_is_not_declare_or_discharge(raw):
    raw.transfer(0, 0, coordinator_message("commit please"))
    assert outcome(raw).error.condition == "amqp:invalid-field"
    raw.transfer(0, 1, coordinator_message(Composite("declare", global_id=b"xa")))
    assert outcome(raw).error.condition == "amqp:not-implemented"


def test_transfer_in_an_unknown_transaction_ends_its_link(raw, channel, unique):
    channel.queue_declare(unique)
    raw.attach_sender(Composite("target", address=f"/queues/{unique}"), handle=1)
    raw.transfer(1, 0, encode_message({"data": [b"x"]}),
                 state=Composite("transactional_state", txn_id=b"nope"))
    detach = raw.frame().performative
    assert detach.kind == "detach" and detach.handle == 1
    assert detach.error.condition == "amqp:transaction:unknown-id"
    assert depth(channel, unique) == 0


def test_disposition_in_an_unknown_transaction_ends_the_session(raw):
    raw.sock.sendall(encode_frame(Composite(
        "disposition", role=True, first=0, settled=True,
        state=Composite("transactional_state", txn_id=b"nope",
                        outcome=Composite("accepted")))))
    end = raw.frame().performative
    assert end.kind == "end" and end.error.condition == "amqp:transaction:unknown-id"


def test_zz_no_traceback(broker):
    assert "Traceback" not in broker.log()
