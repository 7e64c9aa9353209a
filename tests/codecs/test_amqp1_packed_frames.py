"""The packed frames (``amqp1/packed_frames.py``) say what the general encoder's transfer and
accepted disposition say, for every handle, delivery-id and channel, and proton reads them."""

from __future__ import annotations

import proton
from hypothesis import given, strategies as st

from warren.amqp1.packed_frames import HEADER_SIZE, accepted_frame, transfer_header
from warren.amqp1_message.codec import Composite, FrameReader, encode_frame

uint = st.integers(0, 2**32 - 1)
channels = st.integers(0, 2**16 - 1)


def same_frame(packed: bytes, general: bytes) -> None:
    (ours,) = FrameReader(1 << 20).feed(packed)
    (theirs,) = FrameReader(1 << 20).feed(general)
    assert (ours.type, ours.channel, bytes(ours.payload)) == \
        (theirs.type, theirs.channel, bytes(theirs.payload))
    assert list(ours.performative.fields()) == list(theirs.performative.fields())


@given(channels, uint, uint, st.booleans(), st.binary(max_size=64))
def test_transfer_header_decodes_as_the_encoders_transfer(channel, handle, delivery_id,
                                                          settled, payload):
    same_frame(transfer_header(channel, handle, delivery_id, settled, len(payload)) + payload,
               encode_frame(Composite("transfer", handle=handle, delivery_id=delivery_id,
                                      delivery_tag=delivery_id.to_bytes(4, "big"),
                                      message_format=0, settled=settled), channel, payload))


@given(channels, uint)
def test_accepted_frame_decodes_as_the_encoders_disposition(channel, delivery_id):
    same_frame(accepted_frame(channel, delivery_id),
               encode_frame(Composite("disposition", role=True, first=delivery_id,
                                      settled=True, state=Composite("accepted")), channel))


def test_proton_reads_the_packed_frames():
    frame = transfer_header(3, 2**32 - 1, 70000, False, 0)
    assert len(frame) == HEADER_SIZE
    data = proton.Data()
    data.decode(frame[8:])
    transfer = data.get_object()
    assert transfer.descriptor == 0x14
    assert transfer.value == [2**32 - 1, 70000, b"\x00\x01\x11\x70", 0, False]
    data = proton.Data()
    data.decode(accepted_frame(0, 9)[8:])
    disposition = data.get_object()
    assert disposition.descriptor == 0x15
    role, first, last, settled, state = disposition.value
    assert (role, first, last, settled, state.descriptor, state.value) == \
        (True, 9, None, True, 0x24, [])
