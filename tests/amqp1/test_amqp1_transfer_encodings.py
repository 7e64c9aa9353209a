"""A message's transfer performative in the encodings a client may choose (the codec takes
the common one by a shorter way, ``codec._plain_transfer``, and every other by the general
decoder): each routes its message; a transfer whose fields are of the wrong type, or whose
list runs past its frame, closes the connection with ``amqp:decode-error``, and what was
routed before it stays."""

from __future__ import annotations

import struct

import pytest

from tests.amqp1.raw import Raw, close_error
from tests.amqp1.test_amqp1 import depth
from tests.polling import eventually
from warren.amqp1_message.codec import Composite

MESSAGE = b"\x00\x53\x77\xa1\x02hi"          # one amqp-value section: the string "hi"


def transfer_list(*fields: bytes) -> bytes:
    items = b"".join(fields)
    return b"\x00\x53\x14\xc0" + bytes((len(items) + 1, len(fields))) + items


def send_frame(raw, body: bytes) -> None:
    raw.sock.sendall(struct.pack(">IBBH", 8 + len(body), 2, 0, 0) + body)


def attached(broker, channel, queue):
    channel.queue_declare(queue)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin(incoming_window=100, outgoing_window=100)
    raw.attach_sender(Composite("target", address=f"/queues/{queue}"))
    return raw


@pytest.mark.parametrize("fields", [
    # handle uint0, delivery-id smalluint, tag, format uint0, settled true, more false
    (b"\x43", b"\x52\x07", b"\xa0\x01t", b"\x43", b"\x41", b"\x42"),
    # handle and delivery-id as full uints, the rest left out
    (b"\x70\x00\x00\x00\x00", b"\x70\x00\x01\x00\x00", b"\xa0\x02tt"),
    # a ubyte delivery tag (no type is given to the tag) and nulls between
    (b"\x43", b"\x43", b"\x50\x01", b"\x40", b"\x41"),
    # rcv-settle-mode first, and an accepted state
    (b"\x43", b"\x43", b"\xa0\x01t", b"\x43", b"\x42", b"\x42", b"\x50\x00",
     b"\x00\x53\x24\x45"),
    # a wide list
    None,
])
def test_each_encoding_of_a_transfer_routes_its_message(broker, channel, unique, fields):
    raw = attached(broker, channel, unique)
    if fields is None:
        items = b"\x43\x43\xa0\x01t\x43\x41"
        body = b"\x00\x53\x14\xd0" + struct.pack(">II", len(items) + 4, 5) + items
    else:
        body = transfer_list(*fields)
    send_frame(raw, body + MESSAGE)
    eventually(lambda: depth(channel, unique) == 1, "the message routed")


@pytest.mark.parametrize("fields", [
    (b"\x41",),                                  # a boolean handle
    (b"\x43", b"\xa1\x01x"),                     # a string delivery-id
    (b"\x40", b"\x43"),                          # no handle
    (b"\x43", b"\x43", b"\xa0\x05ab"),           # a tag running past the list
])
def test_a_malformed_transfer_is_a_decode_error(broker, channel, unique, fields):
    raw = attached(broker, channel, unique)
    send_frame(raw, transfer_list(b"\x43", b"\x43", b"\xa0\x01a", b"\x43", b"\x41")
               + MESSAGE)
    send_frame(raw, transfer_list(*fields) + MESSAGE)
    assert close_error(raw).condition == "amqp:decode-error"
    assert depth(channel, unique) == 1           # the one before it kept
    assert "Traceback" not in broker.log()
