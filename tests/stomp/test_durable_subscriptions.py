"""Durable topic subscriptions' JMS life cycle (warren/stomp/session.py ``_on_unsubscribe``).

ActiveMQ 5.17 is the reference (tests/compat/stomp_activemq.py): UNSUBSCRIBE without
``activemq.subscriptionName`` deactivates (messages keep accumulating); with it, the
subscription and its pending messages are removed; removing one that has an active consumer
is ERROR ``Durable consumer is in use`` and the subscription goes on delivering.
"""

from __future__ import annotations

import requests

from tests.polling import eventually

NAME = "activemq.subscriptionName"


def _unsubscribe(c, sub_id, **headers):
    c.conn.send_frame("UNSUBSCRIBE", dict(headers, id=sub_id))
    c.sync()


def _durable(client_factory, version, unique):
    c = client_factory(version, headers={"client-id": unique})
    c.subscribe(f"/topic/{unique}", sub_id="d", **{NAME: "sub"})
    return c


def test_unsubscribe_without_name_only_deactivates(client_factory, version, unique):
    c = _durable(client_factory, version, unique)
    _unsubscribe(c, "d")
    c.send(f"/topic/{unique}", "kept-1")
    c.send(f"/topic/{unique}", "kept-2")
    c.sync()
    assert c.recorder.messages.empty()
    c.subscribe(f"/topic/{unique}", sub_id="d", **{NAME: "sub"})
    assert [c.recorder.message().body for _ in range(2)] == ["kept-1", "kept-2"]


def test_unsubscribe_with_name_removes_it_and_its_messages(client_factory, version, unique):
    c = _durable(client_factory, version, unique)
    _unsubscribe(c, "d")
    c.send(f"/topic/{unique}", "pending")
    c.sync()
    _unsubscribe(c, "d", **{NAME: "sub"})            # inactive: removed with what it held
    c.send(f"/topic/{unique}", "nobody")
    c.sync()
    c.subscribe(f"/topic/{unique}", sub_id="d", **{NAME: "sub"})
    c.send(f"/topic/{unique}", "fresh")
    assert c.recorder.message().body == "fresh"
    c.sync()
    assert c.recorder.messages.empty()


def test_unsubscribe_with_name_of_the_active_subscription_removes_it(
        client_factory, version, unique):
    c = _durable(client_factory, version, unique)
    _unsubscribe(c, "d", **{NAME: "sub"})            # its own consumer: ended, then removed
    c.send(f"/topic/{unique}", "nobody")
    c.sync()
    c.subscribe(f"/topic/{unique}", sub_id="d", **{NAME: "sub"})
    c.send(f"/topic/{unique}", "fresh")
    assert c.recorder.message().body == "fresh"


def test_removing_a_subscription_in_use_is_refused(client_factory, broker, version, unique):
    c = _durable(client_factory, version, unique)
    c.conn.send_frame("UNSUBSCRIBE", {"id": "other", NAME: "sub", "receipt": "rm"})
    error = c.recorder.error()
    assert error.headers["message"] == "Durable consumer is in use"
    assert error.headers["receipt-id"] == "rm"
    assert error.body.startswith("javax.jms.JMSException: Durable consumer is in use")
    c.send(f"/topic/{unique}", "still delivering")
    assert c.recorder.message().body == "still delivering"
    assert "Traceback" not in broker.log()


def test_durable_subscriptions_listed_in_the_api(client_factory, broker, unique):
    c = client_factory("1.2", headers={"client-id": unique})
    c.subscribe(f"/topic/{unique}", sub_id="d", selector="colour = 'red'", **{NAME: "sub"})
    url = broker.http_url + "/api/durable-subscriptions"

    def mine():
        rows = requests.get(url, auth=("guest", "guest"), timeout=10).json()
        return [r for r in rows if r["client_id"] == unique]
    row = eventually(mine, "the subscription listed")[0]
    assert row["subscription_name"] == "sub" and row["vhost"] == "/"
    assert row["destination"] == f"/topic/{unique}" and row["selector"] == "colour = 'red'"
    assert row["active"] is True and row["messages"] == 0
    _unsubscribe(c, "d")
    c.send(f"/topic/{unique}", "waiting", colour="red")
    eventually(lambda: (r := mine()) and not r[0]["active"] and r[0]["messages"] == 1,
               "inactive with one pending message")
    vhost_rows = requests.get(url + "/%2F", auth=("guest", "guest"), timeout=10).json()
    assert any(r["client_id"] == unique for r in vhost_rows)
    _unsubscribe(c, "d", **{NAME: "sub"})
    eventually(lambda: not mine(), "the removed subscription gone from the list")


def test_removing_an_unknown_durable_subscription_is_refused(
        client_factory, broker, version, unique):
    # ActiveMQ's InvalidDestinationException words; the connection goes on
    c = client_factory(version, headers={"client-id": unique})
    c.conn.send_frame("UNSUBSCRIBE", {"id": "zz", NAME: "nosuch", "receipt": "rm"})
    error = c.recorder.error()
    text = f"No durable subscription exists for clientID: {unique} and subscriptionName: nosuch"
    assert error.headers["message"] == text and error.headers["receipt-id"] == "rm"
    assert error.body.startswith("javax.jms.InvalidDestinationException: " + text)
    c.subscribe(f"/queue/{unique}")
    c.send(f"/queue/{unique}", "usable")
    assert c.recorder.message().body == "usable"
    assert "Traceback" not in broker.log()


def _pending(broker, client_id):
    rows = requests.get(broker.http_url + "/api/durable-subscriptions",
                        auth=("guest", "guest"), timeout=10).json()
    return [r["messages"] for r in rows if r["client_id"] == client_id]


def test_only_matching_messages_accumulate_while_away(client_factory, broker, version, unique):
    # ActiveMQ: a durable subscription keeps what its selector admits, nothing else
    c = client_factory(version, headers={"client-id": unique})
    c.subscribe(f"/topic/{unique}", sub_id="d", selector="colour = 'red'", **{NAME: "sub"})
    _unsubscribe(c, "d")
    for colour in ("blue", "red", "green"):
        c.send(f"/topic/{unique}", colour, colour=colour)
    c.sync()
    eventually(lambda: _pending(broker, unique) == [1], "one pending message")
    c.subscribe(f"/topic/{unique}", sub_id="d", selector="colour = 'red'", **{NAME: "sub"})
    assert c.recorder.message().body == "red"


def test_a_new_selector_or_topic_makes_a_new_subscription(client_factory, version, unique):
    # JMS and ActiveMQ: changing a durable subscription is unsubscribe + subscribe
    c = client_factory(version, headers={"client-id": unique})
    c.subscribe(f"/topic/{unique}", sub_id="d", selector="n = 1", **{NAME: "sub"})
    _unsubscribe(c, "d")
    c.send(f"/topic/{unique}", "old-1", n="1")
    c.send(f"/topic/{unique}", "old-2", n="2")
    c.sync()
    c.subscribe(f"/topic/{unique}", sub_id="d", selector="n = 2", **{NAME: "sub"})
    c.send(f"/topic/{unique}", "new-2", n="2")
    assert c.recorder.message().body == "new-2"        # old-2 went with the old one
    _unsubscribe(c, "d")
    c.send(f"/topic/{unique}", "first-topic", n="2")
    c.sync()
    c.subscribe(f"/topic/{unique}.other", sub_id="d", selector="n = 2", **{NAME: "sub"})
    c.send(f"/topic/{unique}.other", "other-topic", n="2")
    assert c.recorder.message().body == "other-topic"
    c.sync()
    assert c.recorder.messages.empty()


def test_durable_selector_survives_kill_9(tmp_path, unique):
    from tests.broker_process import BrokerProcess
    from tests.stomp.conftest import Client
    proc = BrokerProcess(tmp_path / "d")
    proc.start()
    try:
        c = Client(proc.stomp_port, "1.2", headers={"client-id": "cid"})
        c.subscribe("/topic/t", sub_id="d", selector="colour = 'red'", **{NAME: "sub"})
        c.close()
        proc.kill()
        proc.start()
        p = Client(proc.stomp_port, "1.2")
        for colour in ("blue", "red"):
            p.conn.send("/topic/t", colour, headers={"colour": colour, "persistent": "true"},
                        receipt=colour)
            assert p.recorder.receipt() == colour
        eventually(lambda: _pending(proc, "cid") == [1], "only the red one kept")
        p.close()
    finally:
        proc.stop()
