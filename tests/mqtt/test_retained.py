"""Retained messages: kept per topic, sent to new subscribers, cleared by an empty payload."""

from __future__ import annotations

from paho.mqtt.subscribeoptions import SubscribeOptions

from tests.mqtt.helpers import V5, Client


def test_retained_delivered_to_new_subscriber_with_retain_flag(broker, unique):
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/r", b"old", 1, retain=True)
    pub.publish(f"{unique}/r", b"last", 1, retain=True)     # replaces
    pub.publish(f"{unique}/other", b"o", 1, retain=True)
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/r", 1)
    m = sub.get()
    assert (m.payload, m.retain, m.qos) == (b"last", True, 1)
    # a message published while subscribed arrives with RETAIN 0 [MQTT-3.3.1-9]
    pub.publish(f"{unique}/r", b"live", 1, retain=True)
    m = sub.get()
    assert (m.payload, m.retain) == (b"live", False)


def test_wildcard_subscription_gets_all_matching_retained(broker, unique):
    pub = Client(broker.mqtt_port)
    for name in ("a", "b", "c"):
        pub.publish(f"{unique}/w/{name}", name.encode(), 0, retain=True)
    pub.publish(f"{unique}/w/b", b"", 1, retain=True)        # empty payload clears b
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/w/+", 0)
    got = sorted([sub.get().payload for _ in range(2)])
    assert got == [b"a", b"c"]
    pub.publish(f"{unique}/w/end", b"end", 0)
    assert [m.payload for m in sub.drain_until(b"end")] == [b"end"]


def test_retained_qos_is_minimum_of_both(broker, unique):
    pub = Client(broker.mqtt_port)
    pub.publish(f"{unique}/q", b"x", 2, retain=True)
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/q", 1)
    assert sub.get().qos == 1


def test_retain_handling_and_retain_as_published(broker, unique):
    pub = Client(broker.mqtt_port, protocol=V5)
    pub.publish(f"{unique}/h", b"kept", 1, retain=True)
    sub = Client(broker.mqtt_port, protocol=V5)
    # retain handling 2: never send retained on subscribe
    sub.subscribe(f"{unique}/h", options=SubscribeOptions(qos=1, retainHandling=2))
    # retain handling 1: only when the subscription is new; this one is not new
    sub.subscribe(f"{unique}/h", options=SubscribeOptions(qos=1, retainHandling=1,
                                                            retainAsPublished=True))
    pub.publish(f"{unique}/h", b"rap", 1, retain=True)
    m = sub.get()
    assert (m.payload, m.retain) == (b"rap", True)     # retain-as-published
    sub2 = Client(broker.mqtt_port, protocol=V5)
    sub2.subscribe(f"{unique}/h", options=SubscribeOptions(qos=1, retainHandling=1))
    m = sub2.get()
    assert (m.payload, m.retain) == (b"rap", True)


def test_retained_found_by_filter_levels(broker, unique):
    """Each wildcard SUBSCRIBE gets exactly the retained messages its filter matches, found
    level by level (``+``, ``#``, "u/#" matching "u" itself, empty levels), and a filter
    starting with a wildcard gets no ``$`` topic [MQTT-4.7.2-1]."""
    u = unique.replace(".", "-")
    stored = [u, f"{u}/a", f"{u}/a/b", f"{u}/a/b/c", f"{u}/x/b", f"{u}//b", f"plain/{u}",
              f"$ctl/{u}"]
    pub = Client(broker.mqtt_port)
    for t in stored:
        pub.publish(t, t.encode(), 1, retain=True)
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{u}-end", 0)
    try:
        for topic_filter, expected in (
                (f"{u}/#", stored[:6]), (f"{u}/+/b", [f"{u}/a/b", f"{u}/x/b", f"{u}//b"]),
                (f"{u}/a/+", [f"{u}/a/b"]), (f"{u}/+", [f"{u}/a"]),
                (f"+/{u}", [f"plain/{u}"]), ("$ctl/+", [f"$ctl/{u}"]), (f"{u}/b", []),
                ("#", stored[:7])):
            sub.subscribe(topic_filter, 1)
            pub.publish(f"{u}-end", b"end", 1)
            got = [m.payload.decode() for m in sub.drain_until(b"end")][:-1]
            if topic_filter == "#":      # every retained message of this module's broker
                assert set(expected) <= set(got) and not [t for t in got if t[0] == "$"]
            else:
                assert sorted(got) == sorted(expected), topic_filter
            sub.unsubscribe(topic_filter)
    finally:
        for t in stored:
            pub.publish(t, b"", 1, retain=True)
        sub.disconnect()
        pub.disconnect()
