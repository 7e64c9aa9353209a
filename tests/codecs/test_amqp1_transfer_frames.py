"""The packed transfer header (``amqp1/transfer_frames.py``) says what the general encoder's
transfer performative says, for every handle, delivery-id and channel, and proton reads it."""

from __future__ import annotations

import proton
from hypothesis import given, strategies as st

from warren.amqp1.transfer_frames import HEADER_SIZE, transfer_header
from warren.amqp1_message.codec import Composite, FrameReader, encode_frame

uint = st.integers(0, 2**32 - 1)


@given(st.integers(0, 2**16 - 1), uint, uint, st.booleans(), st.binary(max_size=64))
def test_transfer_header_decodes_as_the_encoders_transfer(channel, handle, delivery_id,
                                                          settled, payload):
    packed = transfer_header(channel, handle, delivery_id, settled, len(payload)) + payload
    general = encode_frame(Composite("transfer", handle=handle, delivery_id=delivery_id,
                                     delivery_tag=delivery_id.to_bytes(4, "big"),
                                     message_format=0, settled=settled), channel, payload)
    (ours,) = FrameReader(1 << 20).feed(packed)
    (theirs,) = FrameReader(1 << 20).feed(general)
    assert (ours.type, ours.channel, bytes(ours.payload)) == \
        (theirs.type, theirs.channel, bytes(theirs.payload))
    assert list(ours.performative.fields()) == list(theirs.performative.fields())


def test_proton_reads_the_packed_transfer():
    frame = transfer_header(3, 2**32 - 1, 70000, False, 0)
    assert len(frame) == HEADER_SIZE
    data = proton.Data()
    data.decode(frame[8:])
    described = data.get_object()
    assert described.descriptor == 0x14
    assert described.value == [2**32 - 1, 70000, b"\x00\x01\x11\x70", 0, False]
