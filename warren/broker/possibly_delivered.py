"""Which recovered messages may have been delivered before the broker died.

A stored message's delivered mark is lazy (``Broker.note_delivered``): it reaches the store
with the turn's other notes, so a ``kill -9`` can take the mark of a message that was out
with a consumer, and the message would come back as never delivered: redelivered=false in
AMQP 0-9-1, first-acquirer true in AMQP 1.0, which promise the receiver it is no duplicate.
RabbitMQ 4's classic queues face the same gap and close it with a watermark
(``redeliver_seq_id``): after an unclean stop every message then in the queue counts as
possibly delivered (redelivered, and an AMQP 1.0 delivery-count of 1), and the watermark
is kept across clean restarts until those messages are gone.

warren does the same with message ids, which only grow: one definition in the store says
whether the broker is running and below which id messages may have been delivered. Found
still "running" at a start, the last run ended uncleanly, and every message recovered then
(ids up to the store's highest) is below the new watermark. The start flushes the record
before any client is served: a delivery's mark comes after it in the store, so a kill that
took the record took every mark of that run too. A clean stop writes "stopped"
after the turn's notes, so the marks it wrote are the truth. A store written before this
record existed has none: the start treats it as a clean stop (what warren did before).

The watermark is applied where an entry is handed to a consumer (``Queue._hand_over``, a
get), not at recovery: recovery adds most entries of a deep queue in bulk as rows, and one
comparison a delivery (against 0 on a queue recovered after a clean stop) costs less
than a pass over them.
"""

from __future__ import annotations

from typing import Any

#: the store definition (kind, key) that holds the record
KIND = "broker_run"
KEY = "delivery_marks"


def watermark_at_start(definitions: dict[Any, dict[str, Any]], max_msg_id: int) -> int:
    """Below which message id recovered messages may have been delivered, from the record
    the last run left (``definitions``: the store's, by (kind, key)) and the highest id the
    store recovered."""
    record = definitions.get((KIND, KEY))
    if record is None:
        return 0
    kept = int(record.get("below", 0))
    if record.get("running"):
        return max(kept, max_msg_id + 1)
    return kept


def record(below: int, running: bool) -> dict[str, Any]:
    """The definition written at a start (``running``) and at a clean stop."""
    return {"below": below, "running": running}
