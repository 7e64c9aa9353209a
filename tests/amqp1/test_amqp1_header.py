"""The header of a delivery as RabbitMQ 4 writes it (``mc_amqp``'s
``update_header_from_anns``): never empty, first-acquirer true unless the message was
delivered before or dead-lettered, delivery-count the failed deliveries (RabbitMQ 4.3's
classic queue: a release is none); a sender's empty header is taken as transient, as
RabbitMQ 4.2 and later take a header with no durable field."""

from __future__ import annotations

from proton import Delivery, Message

from tests.amqp1.proton_raw import RawMessage, receive_raw, section, sections
from tests.amqp1.test_amqp1_deaths import dead_letter_queues, receive

HEADER, DATA = 0x70, 0x75


def test_the_first_acquirer_is_told_so(amqp1, channel, unique):
    # RabbitMQ 4 writes first-acquirer in every delivery's header: true the first time,
    # false once the message was delivered before or dead-lettered
    dead_letter_queues(channel, unique)
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"once", inferred=True))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    assert receiver.receive(timeout=30).first_acquirer is True
    receiver.release()
    assert receiver.receive(timeout=30).first_acquirer is False
    receiver.reject()
    receiver.close()
    assert receive(amqp1, f"/queues/{unique}-dlq").first_acquirer is False


def test_an_empty_header_is_a_transient_first_delivery(amqp1, channel, unique):
    # a sender's header with no field set: RabbitMQ 4.2 and later take it as transient (the
    # spec's default) and, the header rebuilt at delivery, say first-acquirer: no empty
    # header
    channel.queue_declare(unique)
    header = section(HEADER, [])
    amqp1.create_sender(f"/queues/{unique}").send(
        RawMessage(header + section(DATA, b"bare")))
    got = sections(receive_raw(amqp1, f"/queues/{unique}"))
    durable, _priority, _ttl, first_acquirer = got[HEADER][:4]
    assert (durable, first_acquirer, got[DATA]) == (None, True, b"bare")


def _settle(receiver, state, failed=False):
    """Settle the receiver's oldest unsettled delivery with ``state``; a modified outcome
    with ``failed`` as its delivery-failed (the blocking API's release() never sets it)."""
    delivery = receiver.fetcher.unsettled.popleft()
    delivery.local.failed = failed
    delivery.update(state)
    delivery.settle()


def test_delivery_count_counts_failed_deliveries_not_releases(amqp1, channel, unique):
    # RabbitMQ 4.3's classic queue: released and modified without delivery-failed come back
    # with first-acquirer false and the count unchanged; modified with delivery-failed, and
    # a link that ends with the message unsettled, count one failed delivery each
    channel.queue_declare(unique)
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"again", inferred=True))
    receiver = amqp1.create_receiver(f"/queues/{unique}", credit=1)
    seen = []
    for state, failed in ((Delivery.RELEASED, False), (Delivery.MODIFIED, False),
                          (Delivery.MODIFIED, True), (Delivery.MODIFIED, True), (None, False)):
        got = receiver.receive(timeout=30)
        seen.append((got.first_acquirer, got.delivery_count))
        if state is not None:
            _settle(receiver, state, failed)
    receiver.close()                       # unsettled: a failed delivery too
    got = receive(amqp1, f"/queues/{unique}")
    seen.append((got.first_acquirer, got.delivery_count))
    assert seen == [(True, 0), (False, 0), (False, 0), (False, 1), (False, 2), (False, 3)]
