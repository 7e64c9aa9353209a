"""Users, vhosts and permissions enforced on every AMQP operation, as RabbitMQ does.

Users and permissions are made with ``warren ctl`` (through the HTTP API), the way an operator
would; the AMQP side is then exercised with pika and must answer 403 ACCESS_REFUSED with
RabbitMQ's texts, or 530 NOT_ALLOWED for a vhost the user may not open.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError


def ctl(broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warren", "ctl", "--url", broker.http_url,
                           *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def restricted(broker):
    """A user allowed to configure/write/read only resources named 'mine.*' in a new vhost."""
    user = f"u{uuid.uuid4().hex[:8]}"
    vhost = f"vh-{uuid.uuid4().hex[:8]}"
    for args in (("add_user", user, "pw"), ("add_vhost", vhost),
                 ("-V", vhost, "set_permissions", user, "^mine\\.", "^(mine\\.|amq\\.default$)",
                  "^(mine\\.|amq\\.)")):
        r = ctl(broker, *args)
        assert r.returncode == 0, r.stderr
    params = pika.ConnectionParameters(port=broker.amqp_port, virtual_host=vhost,
                                       credentials=pika.PlainCredentials(user, "pw"))
    conn = pika.BlockingConnection(params)
    yield conn, user, vhost
    if conn.is_open:
        conn.close()
    ctl(broker, "delete_vhost", vhost)
    ctl(broker, "delete_user", user)


def test_allowed_resources_work(restricted):
    conn, _user, _vhost = restricted
    ch = conn.channel()
    ch.queue_declare("mine.q")
    ch.exchange_declare("mine.x", "fanout")
    ch.queue_bind("mine.q", "mine.x")
    ch.basic_publish("mine.x", "", b"ok")
    method, _props, body = ch.basic_get("mine.q", auto_ack=True)
    assert body == b"ok"


@pytest.mark.parametrize("operation, text", [
    (lambda ch: ch.queue_declare("other.q"),
     "ACCESS_REFUSED - access to queue 'other.q' in vhost '{vhost}' refused for user '{user}'"),
    (lambda ch: ch.exchange_declare("other.x", "direct"),
     "ACCESS_REFUSED - access to exchange 'other.x' in vhost '{vhost}' refused for user "
     "'{user}'"),
])
def test_configure_refused(restricted, operation, text):
    conn, user, vhost = restricted
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        operation(ch)
    assert e.value.reply_code == 403
    assert e.value.reply_text == text.format(vhost=vhost, user=user)


def test_write_refused_on_publish(broker, restricted):
    conn, user, vhost = restricted
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_publish("amq.fanout", "", b"x")
    assert e.value.reply_code == 403
    assert e.value.reply_text == (f"ACCESS_REFUSED - access to exchange 'amq.fanout' in vhost "
                                  f"'{vhost}' refused for user '{user}'")


def test_read_refused_on_consume_and_get(broker, restricted):
    conn, user, vhost = restricted
    # guest created the vhost, so (as in RabbitMQ) it has full permissions there
    admin = pika.BlockingConnection(pika.ConnectionParameters(port=broker.amqp_port,
                                                              virtual_host=vhost))
    admin.channel().queue_declare("theirs")
    admin.close()
    for op in (lambda ch: ch.basic_get("theirs"),
               lambda ch: ch.basic_consume("theirs", lambda *a: None)):
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            op(ch)
        assert e.value.reply_code == 403
        assert e.value.reply_text == (f"ACCESS_REFUSED - access to queue 'theirs' in vhost "
                                      f"'{vhost}' refused for user '{user}'")


def test_bind_needs_read_on_exchange(restricted):
    conn, user, vhost = restricted
    ch = conn.channel()
    ch.queue_declare("mine.b")
    ch.exchange_declare("mine.src", "direct")
    ch.queue_bind("mine.b", "mine.src", "k")
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().queue_bind("mine.b", "amq.default", "k")
    assert e.value.reply_code in (403, 404)


def test_vhost_without_permissions_is_530(broker):
    user = f"u{uuid.uuid4().hex[:8]}"
    assert ctl(broker, "add_user", user, "pw").returncode == 0
    params = pika.ConnectionParameters(port=broker.amqp_port, virtual_host="/",
                                       credentials=pika.PlainCredentials(user, "pw"),
                                       connection_attempts=1)
    with pytest.raises(ProbableAccessDeniedError) as e:
        pika.BlockingConnection(params)
    assert "530" in str(e.value)
    assert f"access to vhost '/' refused for user '{user}'" in str(e.value)
    ctl(broker, "delete_user", user)


def test_deleted_user_cannot_log_in(broker):
    user = f"u{uuid.uuid4().hex[:8]}"
    assert ctl(broker, "add_user", user, "pw").returncode == 0
    assert ctl(broker, "set_permissions", user, ".*", ".*", ".*").returncode == 0
    params = pika.ConnectionParameters(port=broker.amqp_port,
                                       credentials=pika.PlainCredentials(user, "pw"),
                                       connection_attempts=1)
    pika.BlockingConnection(params).close()
    assert ctl(broker, "delete_user", user).returncode == 0
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)
