"""JMS headers in selectors and on MESSAGE frames (warren/stomp/jms.py).

ActiveMQ 5.17 is the reference for the names, values and types (tests/compat/
stomp_activemq.py): JMSDeliveryMode is 'PERSISTENT'/'NON_PERSISTENT', JMSRedelivered a
boolean, JMSPriority 4 by default, JMSExpiration the absolute ms of ``expires`` (0 without).
"""

from __future__ import annotations

import time

import pytest

SELECTORS = [
    ("JMSDeliveryMode = 'PERSISTENT'", {"persistent": "true"}, {"persistent": "false"}),
    ("JMSDeliveryMode = 'NON_PERSISTENT'", {}, {"persistent": "true"}),
    ("JMSPriority = 4", {}, {"priority": "5"}),
    ("JMSPriority > 6", {"priority": "7"}, {"priority": "6"}),
    ("JMSType = 'order'", {"type": "order"}, {"type": "invoice"}),
    ("JMSCorrelationID = 'c-1'", {"correlation-id": "c-1"}, {"correlation-id": "c-2"}),
    ("JMSXGroupID = 'g1'", {"JMSXGroupID": "g1"}, {"JMSXGroupID": "g2"}),
    ("JMSMessageID = 'm-1'", {"amqp-message-id": "m-1"}, {}),
    ("JMSTimestamp = 1700000000000", {"timestamp": "1700000000000"}, {"timestamp": "17"}),
    ("JMSTimestamp > 1600000000000", {}, {"timestamp": "1600000000"}),  # stamped on arrival
    ("JMSExpiration > 0", {"expires": "EXPIRES"}, {}),
    ("JMSExpiration = 0", {}, {"expires": "EXPIRES"}),
    ("JMSRedelivered = FALSE", {}, None),
]


@pytest.mark.parametrize("selector, matching, other", SELECTORS,
                         ids=[s[0] for s in SELECTORS])
def test_jms_header_in_selector(client_factory, version, unique, selector, matching, other):
    c = client_factory(version)
    q = f"/queue/{unique}"
    expires = str(int(time.time() * 1000) + 600_000)

    def headers(h):
        return {k: (expires if v == "EXPIRES" else v) for k, v in h.items()}
    c.subscribe(q, selector=selector)
    if other is not None:
        c.send(q, "other", **headers(other))
    c.send(q, "match", **headers(matching))
    assert c.recorder.message().body == "match"
    c.sync()
    assert c.recorder.messages.empty()


def test_jms_redelivered_true_after_a_requeue(client_factory, version, unique):
    q = f"/queue/{unique}"
    first = client_factory(version)
    first.subscribe(q, ack="client-individual", selector="JMSRedelivered = FALSE")
    first.send(q, "once")
    frame = first.recorder.message()
    assert frame.headers["redelivered"] == "false"
    again = client_factory(version)
    again.subscribe(q, selector="JMSRedelivered = TRUE")
    first.nack(frame, requeue=True) if version != "1.0" else first.close()
    # the requeued message is redelivered: only the TRUE subscriber or the first may take it;
    # unsubscribing the first leaves the TRUE one
    if version != "1.0":
        first.conn.unsubscribe("s1")
    frame = again.recorder.message()
    assert frame.body == "once" and frame.headers["redelivered"] == "true"


def test_message_frame_carries_jms_headers_as_sent(client_factory, version, unique):
    c = client_factory(version)
    q = f"/queue/{unique}"
    expires = str(int(time.time() * 1000) + 600_000)
    sent = {"timestamp": "1700000000123", "expires": expires, "priority": "7",
            "persistent": "true", "type": "order", "correlation-id": "c-9",
            "JMSXGroupID": "g", "colour": "blue", "weight": "12"}
    c.subscribe(q)
    c.send(q, "all", **sent)
    c.send(q, "plain")
    frame = c.recorder.message()
    for name, value in sent.items():
        assert frame.headers.get(name) == value, name
    assert frame.headers["redelivered"] == "false"
    plain = c.recorder.message()
    assert plain.body == "plain" and plain.headers["priority"] == "4"
    assert int(plain.headers["timestamp"]) >= int(time.time() * 1000) - 600_000   # ms
    assert "persistent" not in plain.headers and "expires" not in plain.headers


def test_rabbitmq_destinations_carry_only_what_was_sent(client_factory, version, unique):
    c = client_factory(version)
    c.subscribe(f"/exchange/amq.fanout/{unique}")
    c.send(f"/exchange/amq.fanout/{unique}", "bare")
    frame = c.recorder.message()
    assert "timestamp" not in frame.headers and "priority" not in frame.headers


BAD_SELECTORS = [
    ("a = = 1", "expected an operand but found '=' at column 5"),
    ("foo(a) = 1", "unknown function 'foo' at column 1"),
    ("a LIKE 3", "expected a string literal after LIKE"),
    ("(a = 1", "expected ')' to close the '(' at column 1"),
    ("a = 'x", "unterminated string literal"),
]


@pytest.mark.parametrize("selector, reason", BAD_SELECTORS, ids=[b[0] for b in BAD_SELECTORS])
def test_bad_selector_is_refused_and_the_connection_goes_on(
        client_factory, broker, version, unique, selector, reason):
    # ActiveMQ's behaviour: ERROR (with the receipt-id), no subscription, connection usable
    c = client_factory(version)
    q = f"/queue/{unique}"
    c.conn.send(q, "kept", headers={"persistent": "true"})
    headers = {"selector": selector, "id": "s1", "receipt": "sub"}
    c.conn.send_frame("SUBSCRIBE", dict(headers, destination=q, ack="auto"))
    error = c.recorder.error()
    assert error.headers["message"] == selector        # ActiveMQ's message: the selector
    assert error.headers["receipt-id"] == "sub"
    assert error.body.startswith(f"javax.jms.InvalidSelectorException: {selector}\n")
    assert reason in error.body
    c.sync()                                  # still connected
    assert not c.recorder.disconnected.is_set()
    c.subscribe(q, sub_id="s1")              # the id was never taken; the message was kept
    assert c.recorder.message().body == "kept"
    assert "Traceback" not in broker.log()
