"""A delivery's transfer frame header packed by one ``struct`` call.

Every message a receiver gets starts with the same transfer performative but for its handle,
delivery-id, delivery-tag (the delivery-id's four bytes) and settled flag. Built as a
``Composite`` and run through the general encoder it cost more than the message itself; the
fixed layout below writes the same fields (uint as 0x70 + 4 bytes, the tag as vbin8,
message-format 0 as uint0, settled as true/false) in one pack. Multi-frame transfers, which
need ``more``, still go through the codec.
"""

from __future__ import annotations

import struct

# size, doff 2 / type 0 (AMQP), channel; descriptor 0x14 and a list8 of 5 fields, the handle
_HEAD = struct.Struct(">IHH7sI")
# delivery-id, the tag (vbin8 of 4 bytes: the delivery-id again), message-format, settled
_TAIL = struct.Struct(">BIHIB1s")
_TRANSFER_LIST = b"\x00\x53\x14\xc0\x13\x05\x70"    # ..., then handle as uint
_SETTLED = {True: b"\x41", False: b"\x42"}
#: bytes before the payload
HEADER_SIZE = _HEAD.size + _TAIL.size


def transfer_header(channel: int, handle: int, delivery_id: int, settled: bool,
                    payload_size: int) -> bytes:
    """The frame header and transfer performative of a one-frame delivery."""
    return _HEAD.pack(HEADER_SIZE + payload_size, 0x0200, channel, _TRANSFER_LIST, handle) \
        + _TAIL.pack(0x70, delivery_id, 0xA004, delivery_id, 0x43, _SETTLED[settled])
