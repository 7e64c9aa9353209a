"""Last will and testament: on abnormal close, keep-alive expiry, with 5.0 will delay."""

from __future__ import annotations

from tests.mqtt.helpers import V5, V311, Client, RawClient, cid, v5_props
from paho.mqtt.packettypes import PacketTypes

from warren.mqtt.codec import Connect, Will


def test_will_published_on_abnormal_close(broker, unique):
    watcher = Client(broker.mqtt_port)
    watcher.subscribe(f"{unique}/will", 1)
    dying = Client(broker.mqtt_port, will=(f"{unique}/will", b"gone", 1, False))
    dying.drop()
    m = watcher.get()
    assert (m.payload, m.qos) == (b"gone", 1)


def test_will_discarded_on_clean_disconnect(broker, unique):
    watcher = Client(broker.mqtt_port)
    watcher.subscribe(f"{unique}/will", 1)
    polite = Client(broker.mqtt_port, will=(f"{unique}/will", b"never", 1, False))
    polite.disconnect()
    Client(broker.mqtt_port).publish(f"{unique}/will", b"marker", 1)
    assert [m.payload for m in watcher.drain_until(b"marker")] == [b"marker"]


def test_keep_alive_timeout_fires_will(broker, unique):
    watcher = Client(broker.mqtt_port)
    watcher.subscribe(f"{unique}/ka", 0)
    raw = RawClient(broker.mqtt_port)
    raw.send(Connect(client_id=cid(), keep_alive=1, username="guest", password=b"guest",
                     will=Will(f"{unique}/ka", b"timeout")))
    assert raw.recv().reason_code == 0
    # we go silent: after 1.5 s the broker closes us and publishes the will
    assert raw.closed()
    assert watcher.get().payload == b"timeout"


def test_will_retained(broker, unique):
    dying = Client(broker.mqtt_port, will=(f"{unique}/rw", b"ret", 0, True))
    watcher = Client(broker.mqtt_port)
    watcher.subscribe(f"{unique}/rw", 0)
    dying.drop()
    assert watcher.get().payload == b"ret"
    late = Client(broker.mqtt_port)
    late.subscribe(f"{unique}/rw", 0)
    m = late.get()
    assert (m.payload, m.retain) == (b"ret", True)


def test_will_delay_cancelled_by_reconnect(broker, unique):
    watcher = Client(broker.mqtt_port, protocol=V5)
    watcher.subscribe(f"{unique}/wd", 1)
    client_id = cid()
    session = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    will_props = v5_props(PacketTypes.WILLMESSAGE, WillDelayInterval=30)
    first = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                   properties=session, will=(f"{unique}/wd", b"delayed", 1, False),
                   will_properties=will_props)
    first.drop()
    again = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                   properties=session)
    again.publish(f"{unique}/wd", b"marker", 1)
    assert [m.payload for m in watcher.drain_until(b"marker")] == [b"marker"]
    again.disconnect()


def test_will_delay_zero_with_v5(broker, unique):
    watcher = Client(broker.mqtt_port, protocol=V5)
    watcher.subscribe(f"{unique}/w0", 1)
    dying = Client(broker.mqtt_port, protocol=V5, will=(f"{unique}/w0", b"now", 1, False))
    dying.drop()
    assert watcher.get().payload == b"now"


def test_delayed_will_sent_when_session_expires_first(broker, unique):
    """Will delay 30 s, session expiry 1 s: the will goes when the session ends [MQTT-3.1.3-9]
    (it used to be lost: the cancelled timer's function was called)."""
    watcher = Client(broker.mqtt_port, protocol=V5)
    watcher.subscribe(f"{unique}/we", 1)
    session = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=1)
    will_props = v5_props(PacketTypes.WILLMESSAGE, WillDelayInterval=30)
    dying = Client(broker.mqtt_port, protocol=V5, clean=False, properties=session,
                   will=(f"{unique}/we", b"expired", 1, False), will_properties=will_props)
    dying.drop()
    assert watcher.get().payload == b"expired"


def test_delayed_will_dropped_when_a_clean_start_reconnects_first(broker, unique):
    """A new connection for the client id before the will delay has passed: the delayed will
    is not sent [MQTT-3.1.2-8], [MQTT-3.1.3-9], though its clean start ends the old session;
    the reconnect is accepted (it once got CONNACK 0x80). Mosquitto 2.0.11 likewise (its
    07-will-delay-recover)."""
    watcher = Client(broker.mqtt_port, protocol=V5)
    watcher.subscribe(f"{unique}/wc", 1)
    client_id = cid()
    session = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    will_props = v5_props(PacketTypes.WILLMESSAGE, WillDelayInterval=30)
    first = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                   properties=session, will=(f"{unique}/wc", b"ended", 1, False),
                   will_properties=will_props)
    first.drop()
    again = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=True)
    assert again.connack == 0 and not again.session_present
    again.publish(f"{unique}/wc", b"marker", 1)
    assert [m.payload for m in watcher.drain_until(b"marker")] == [b"marker"]
    again.disconnect()


def test_delayed_will_dropped_when_a_clean_start_takes_over(broker, unique):
    """The same when the new connection takes over one still open: its will waits for the
    delay, and the new connection came first."""
    watcher = Client(broker.mqtt_port, protocol=V5)
    watcher.subscribe(f"{unique}/wt", 1)
    client_id = cid()
    session = v5_props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    will_props = v5_props(PacketTypes.WILLMESSAGE, WillDelayInterval=30)
    first = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=False,
                   properties=session, will=(f"{unique}/wt", b"taken", 1, False),
                   will_properties=will_props)
    again = Client(broker.mqtt_port, protocol=V5, client_id=client_id, clean=True)
    assert again.connack == 0 and not again.session_present
    assert first.disconnected.wait(10)
    again.publish(f"{unique}/wt", b"marker", 1)
    assert [m.payload for m in watcher.drain_until(b"marker")] == [b"marker"]
    again.disconnect()
