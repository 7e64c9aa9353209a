"""The one place STOMP decides what a client sees when something goes wrong: an ERROR frame.

Every fault on a STOMP connection is fatal to it (STOMP 1.2: "the server MUST then close the
connection just after sending the ERROR frame"), so this only decides the frame:

- ``message`` header: short text saying what was wrong. For core errors it is RabbitMQ's bare
  title (``not_found``, with the reply text ``NOT_FOUND - no queue 'q' in vhost '/'`` as the
  body), for codec and session faults the :class:`~warren.stomp.codec.StompError` message
  ("Frame too large", "Missing destination").
- body (``text/plain``): the longer explanation.
- ``version``: the versions the broker speaks (``1.0,1.1,1.2``), on every ERROR as RabbitMQ.
- ``receipt-id``: the receipt the faulting frame asked for, if any (STOMP 1.2 "ERROR").

One exception to "fatal": :class:`Refused`, a frame the broker declines while the session stays
sound. ActiveMQ answers an invalid selector that way (checked against 5.17: ERROR with the
receipt-id, no subscription, the connection goes on), and JMS clients count on it.
"""

from __future__ import annotations

from ..model.errors import BrokerError
from .codec import SUPPORTED_VERSIONS, Frame, StompError

__all__ = ["Refused", "VERSION_HEADER", "error_frame"]

#: every RabbitMQ ERROR frame carries the versions it speaks (rabbit_stomp_processor:
#: send_error_frame), after ``message`` and ``content-type``
VERSION_HEADER = ("version", ",".join(SUPPORTED_VERSIONS))


class Refused(StompError):
    """A frame refused without ending the connection: ERROR (with its receipt-id), then the
    session reads on (``listener.py``)."""


def error_frame(error: BaseException, receipt: str | None = None) -> Frame:
    """The ERROR frame for *error* (a StompError, a core BrokerError, or anything else)."""
    if isinstance(error, StompError):
        message, detail = error.message, error.detail or error.message
    elif isinstance(error, BrokerError):
        # as RabbitMQ: the header is the bare title (``not_found``), the body the reply text
        # (``NOT_FOUND - no exchange 'x' in vhost '/'``)
        message = error.name.lower()
        detail = error.reply_text + "\n"
    else:
        message, detail = "Internal error", "the broker failed to handle the frame"
    return _frame(message, detail, receipt)


def _frame(message: str, detail: str, receipt: str | None) -> Frame:
    # Header values must fit on one line whatever the version (1.0 has no escapes).
    message = message.replace("\r", " ").replace("\n", " ")[:1000]
    body = detail.encode("utf-8")
    headers = [("message", message), ("content-type", "text/plain"), VERSION_HEADER]
    if receipt is not None:
        headers.append(("receipt-id", receipt.replace("\r", " ").replace("\n", " ")))
    headers.append(("content-length", str(len(body))))
    return Frame("ERROR", tuple(headers), body)
