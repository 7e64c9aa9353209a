"""The header of a delivery as RabbitMQ 4 writes it (``mc_amqp``'s
``update_header_from_anns``): never empty, first-acquirer true unless the message was
delivered before or dead-lettered; a sender's empty header is taken as transient, as
RabbitMQ 4.2 and later take a header with no durable field."""

from __future__ import annotations

from proton import Message

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
