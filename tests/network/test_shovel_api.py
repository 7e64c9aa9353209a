"""Dynamic shovels through the HTTP API and ``warren ctl``, inside one broker (``amqp://``).

What a RabbitMQ user does with the shovel plugin's API: define a shovel as a runtime parameter,
see it in ``/api/shovels``, restart it, delete it; a refused definition answers 400 with
RabbitMQ's words and stores nothing. The moving itself, across brokers and through faults, is
``test_shovel_faults.py``'s; here both ends are this broker, so every move is exact (a remote
end, ``amqp://host:port``, is this broker reached over its AMQP port).
"""

from __future__ import annotations


import jsonschema
import pika
import pytest
import requests

from tests.broker_process import BrokerProcess
from tests.polling import eventually
from tests.webconsole.conftest import ApiClient, make_user  # noqa: F401 (fixture)
from tests.webconsole.test_ctl import ctl

DEADLINE = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("shovel-api"))
    proc.start()
    yield proc
    proc.stop()
    proc.kill()


@pytest.fixture(scope="module")
def api(broker) -> ApiClient:
    return ApiClient(broker.http_url)


def shovel_path(name: str, vhost: str = "%2F") -> str:
    return f"/api/parameters/shovel/{vhost}/{name}"


def publish(broker, queue: str, count: int, declare: bool = True, **props) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        if declare:
            ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        for i in range(count):
            ch.basic_publish("", queue, f"{queue}-{i}".encode(),
                             pika.BasicProperties(delivery_mode=2, **props))
    finally:
        conn.close()


def depth(api, queue: str) -> int | None:
    r = api.get(f"/api/queues/%2F/{queue}")
    return r.json().get("messages_ready") if r.status_code == 200 else None


def drain(broker, queue: str) -> list[tuple[bytes, dict]]:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    out = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((body, props.headers or {}))
    finally:
        conn.close()


def status(api, name: str) -> dict:
    r = api.get(f"/api/shovels/%2F/{name}")
    return r.json() if r.status_code == 200 else {}


def schema_check(broker, body) -> None:
    doc = requests.get(broker.http_url + "/api/openapi.json", timeout=30).json()
    jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Shovel",
                                     "components": doc["components"]}).validate(body)


def no_traceback(broker) -> None:
    assert not any("Traceback" in line for line in broker.lines), broker.log()


def test_queue_to_queue_moves_everything_and_reports_status(api, broker, unique):
    src, dst = unique + "-src", unique + "-dst"
    publish(broker, src, 500)
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": "amqp://", "src-queue": src, "dest-uri": "amqp://", "dest-queue": dst,
        "dest-add-forward-headers": True}})
    assert r.status_code == 201, r.text
    eventually(lambda: depth(api, dst) == 500, "all moved")
    assert depth(api, src) == 0
    st = eventually(lambda: status(api, unique).get("forwarded") == 500 and status(api, unique),
                    "status counts")
    schema_check(broker, st)
    assert st["state"] == "running" and st["type"] == "dynamic" and st["vhost"] == "/"
    assert st["src_queue"] == src and st["dest_queue"] == dst
    assert st["src_uri"] == "amqp://" and st["src_protocol"] == "amqp091"
    assert [s for s in api.get("/api/shovels").json() if s["name"] == unique] == [st]
    assert [s["name"] for s in api.get("/api/shovels/%2F").json()].count(unique) == 1
    moved = drain(broker, dst)
    assert sorted(b for b, _ in moved) == sorted(f"{src}-{i}".encode() for i in range(500))
    header = moved[0][1]["x-shovelled"]
    assert isinstance(header, list) and len(header) == 1
    assert header[0] == {"shovelled-by": "warren@localhost", "shovel-type": "dynamic",
                         "shovel-name": unique, "shovel-vhost": "/",
                         "src-uri": "amqp://", "dest-uri": "amqp://",
                         "src-queue": src, "dest-queue": dst}
    # deleting the parameter stops the shovel: later messages stay at the source
    assert api.delete(shovel_path(unique)).status_code == 204
    eventually(lambda: status(api, unique) == {}, "shovel gone")
    publish(broker, src, 3)
    assert depth(api, src) == 3
    no_traceback(broker)


def test_exchange_source_and_exchange_destination(api, broker, unique):
    dst = unique + "-dst"
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.exchange_declare(unique + "-in", "topic")
    ch.exchange_declare(unique + "-out", "direct")
    ch.queue_declare(dst)
    ch.queue_bind(dst, unique + "-out", "moved")
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": "amqp://", "src-exchange": unique + "-in", "src-exchange-key": "a.#",
        "dest-uri": "amqp://", "dest-exchange": unique + "-out", "dest-exchange-key": "moved",
        "dest-add-timestamp-header": True, "ack-mode": "on-publish"}})
    assert r.status_code == 201, r.text
    eventually(lambda: status(api, unique).get("state") == "running", "running")
    st = status(api, unique)
    assert st["src_exchange"] == unique + "-in" and st["src_exchange_key"] == "a.#"
    assert st["dest_exchange"] == unique + "-out" and st["dest_exchange_key"] == "moved"
    ch.confirm_delivery()
    for key in ("a.b", "x.y", "a.c"):
        ch.basic_publish(unique + "-in", key, key.encode())
    conn.close()
    eventually(lambda: depth(api, dst) == 2, "matching messages moved")
    moved = drain(broker, dst)
    assert sorted(b for b, _ in moved) == [b"a.b", b"a.c"]
    assert all(isinstance(h["x-shovelled-timestamp"], int) for _, h in moved)
    assert api.delete(shovel_path(unique)).status_code == 204
    # the shovel's private queue went with it
    eventually(lambda: not [q for q in api.get("/api/queues/%2F").json()
                            if q.get("exclusive") and q["name"].startswith("amq.gen")
                            and q.get("consumers") == 0], "private queue deleted",
               timeout=10)


def test_delete_after_queue_length_moves_the_backlog_then_deletes_itself(api, broker, unique):
    src, dst = unique + "-src", unique + "-dst"
    publish(broker, src, 300)
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": "amqp://", "src-queue": src, "dest-uri": "amqp://", "dest-queue": dst,
        "src-delete-after": "queue-length", "src-prefetch-count": 50}})
    assert r.status_code == 201
    eventually(lambda: api.get(shovel_path(unique)).status_code == 404, "parameter cleared")
    assert depth(api, dst) == 300
    assert status(api, unique) == {}


def test_numeric_delete_after_moves_exactly_that_many(api, broker, unique):
    src, dst = unique + "-src", unique + "-dst"
    publish(broker, src, 100)
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": "amqp://", "src-queue": src, "dest-uri": "amqp://", "dest-queue": dst,
        "delete-after": 40, "prefetch-count": 16}})
    assert r.status_code == 201
    eventually(lambda: api.get(shovel_path(unique)).status_code == 404, "parameter cleared")
    assert depth(api, dst) == 40 and depth(api, src) == 60


def test_restart_endpoint(api, broker, unique):
    src, dst = unique + "-src", unique + "-dst"
    api.put(shovel_path(unique), {"value": {"src-uri": "amqp://", "src-queue": src,
                                            "dest-uri": "amqp://", "dest-queue": dst}})
    eventually(lambda: status(api, unique).get("state") == "running", "running")
    r = api.delete(f"/api/shovels/vhost/%2F/{unique}/restart")
    assert r.status_code == 204
    broker.wait_for_line(f"shovel '{unique}' in virtual host '/' will be restarted")
    eventually(lambda: status(api, unique).get("state") == "running", "running again")
    publish(broker, src, 10)
    eventually(lambda: depth(api, dst) == 10, "moving after the restart")
    assert api.delete(f"/api/shovels/vhost/%2F/{unique}-none/restart").status_code == 404
    assert api.delete(f"/api/shovels/vhost/no-such-vhost/{unique}/restart").status_code == 404
    assert api.get(f"/api/shovels/%2F/{unique}-none").status_code == 404
    api.delete(shovel_path(unique))


BAD = [
    ({"src-uri": "amqp://", "src-queue": "a", "src-exchange": "x", "dest-uri": "amqp://"},
     "Cannot specify 'src-exchange' and 'src-queue'"),
    ({"src-uri": "amqp://", "dest-uri": "amqp://"},
     "Must specify 'src-exchange' or 'src-queue'"),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b",
      "dest-exchange": "x"}, "Cannot specify 'dest-exchange' and 'dest-queue'"),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "colour": "red"},
     'Unrecognised terms [{<<"colour">>,<<"red">>}] in NAME'),
    ({"src-uri": "amqp://", "src-queue": "a"}, 'Key "dest-uri" not found in NAME'),
    ({"src-uri": "http://x", "src-queue": "a", "dest-uri": "amqp://"},
     '"http://x" not a valid URI: '),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "ack-mode": "later"},
     'ack-mode should be one of [<<"no-ack">>,<<"on-publish">>,<<"on-confirm">>], '
     'actually was <<"later">>'),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "ack-mode": "no-ack",
      "src-delete-after": 5}, "Cannot specify 'no-ack' and numerical 'delete-after'"),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://",
      "src-delete-after": "soon"},
     'src-delete-after should be number, "never" or "queue-length", actually was '
     '<<"soon">>'),
    ({"src-uri": "amqp://", "src-queue": 7, "dest-uri": "amqp://"},
     "src-queue should be binary, actually was 7"),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://",
      "src-prefetch-count": "many"}, 'src-prefetch-count should be a number, actually was '
                                     '<<"many">>'),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://",
      "src-protocol": "amqp10"}, "src-protocol amqp10 is not supported by warren"),
    ({"src-uri": ["amqp://", "amqp://h:99999"], "src-queue": "a", "dest-uri": "amqp://"},
     '"amqp://h:99999" not a valid URI'),
    ("just a string", "NAME not a list <<\"just a string\">>"),
]


@pytest.mark.parametrize("value,reason", BAD, ids=range(len(BAD)))
def test_bad_definitions_are_refused_with_rabbitmqs_words(api, broker, unique, value, reason):
    r = api.put(shovel_path(unique), {"value": value})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "bad_request"
    want = reason.replace("NAME", unique).replace("<", "&lt;").replace(">", "&gt;")
    assert body["reason"].startswith("Validation failed\n\n") and want in body["reason"], body
    assert api.get(shovel_path(unique)).status_code == 404   # nothing half created
    assert status(api, unique) == {}
    no_traceback(broker)


def test_password_never_shown(api, broker, unique):
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": "amqp://bob:s3cr3t-pw@127.0.0.1:1/%2F", "src-queue": "a",
        "dest-uri": "amqp://", "dest-queue": unique, "reconnect-delay": 0.2}})
    assert r.status_code == 201
    st = eventually(lambda: status(api, unique).get("reason") and status(api, unique),
                    "a failure reason")
    assert "s3cr3t-pw" not in str(st) and "s3cr3t-pw" not in broker.log()
    api.delete(shovel_path(unique))


def test_local_end_needs_access_to_its_vhost(api, broker, unique, make_user):
    user, password = make_user(tags="policymaker", perms=False)
    api.put(f"/api/vhosts/{unique}", None)
    api.put(f"/api/permissions/{unique}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"})
    own = ApiClient(broker.http_url, (user, password))
    r = own.put(shovel_path(unique, vhost=unique), {"value": {
        "src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://",
        "dest-queue": "b"}})
    assert r.status_code == 400
    assert f'user "{user}" may not connect to vhost "/"' in r.json()["reason"]
    assert own.get(shovel_path(unique, vhost=unique)).status_code == 404


def test_ctl_and_restart_of_the_broker(api, broker, tmp_path, unique):
    src, dst = unique + "-src", unique + "-dst"
    out = ctl(broker, "set_parameter", "shovel", unique,
              f'{{"src-uri": "amqp://", "src-queue": "{src}", "dest-uri": "amqp://", '
              f'"dest-queue": "{dst}"}}')
    assert out.returncode == 0, out.stderr
    eventually(lambda: status(api, unique).get("state") == "running", "running")
    assert unique in ctl(broker, "list_parameters").stdout
    # a stored shovel runs again after a restart (even after kill -9)
    broker.kill()
    broker.start()
    eventually(lambda: status(api, unique).get("state") == "running", "running again")
    publish(broker, src, 20)
    eventually(lambda: depth(api, dst) == 20, "moving after the restart")
    assert ctl(broker, "clear_parameter", "shovel", unique).returncode == 0
    eventually(lambda: status(api, unique) == {}, "shovel gone")


def test_definitions_in_rabbitmqs_format_round_trip(api, broker, unique):
    src, dst = unique + "-src", unique + "-dst"
    value = {"src-uri": "amqp://", "src-queue": src, "src-protocol": "amqp091",
             "dest-uri": "amqp://", "dest-queue": dst, "dest-protocol": "amqp091",
             "ack-mode": "on-confirm", "src-delete-after": "never",
             "dest-add-forward-headers": False, "reconnect-delay": 5}
    doc = {"parameters": [{"value": value, "vhost": "/", "component": "shovel",
                           "name": unique}]}
    r = api.post("/api/definitions", doc)
    assert r.status_code in (200, 201, 204), r.text
    eventually(lambda: status(api, unique).get("state") == "running", "imported shovel runs")
    exported = api.get("/api/definitions").json()["parameters"]
    assert {"value": value, "vhost": "/", "component": "shovel", "name": unique} in exported
    publish(broker, src, 5)
    eventually(lambda: depth(api, dst) == 5, "moving")
    api.delete(shovel_path(unique))


def test_metrics_per_shovel(api, broker, unique):
    src, dst = unique + "-src", unique + "-dst"
    publish(broker, src, 7)
    api.put(shovel_path(unique), {"value": {"src-uri": "amqp://", "src-queue": src,
                                            "dest-uri": "amqp://", "dest-queue": dst}})
    eventually(lambda: depth(api, dst) == 7, "moved")

    def series() -> str:
        return requests.get(broker.http_url + "/metrics", timeout=30).text
    labels = f'shovel="{unique}",vhost="/"'   # prometheus_client sorts label names
    text = eventually(lambda: f"warren_shovel_messages_forwarded_total{{{labels}}} 7.0"
                      in series() and series(), "forwarded series")
    at = f'shovel="{unique}"'
    assert f'warren_shovel_state{{{at},state="running",vhost="/"}} 1.0' in text
    assert f'warren_shovel_state{{{at},state="terminated",vhost="/"}} 0.0' in text
    assert f"warren_shovel_messages_pending{{{labels}}} 0.0" in text
    api.delete(shovel_path(unique))


def test_missing_destination_exchange_terminates_then_recovers(api, broker, unique):
    src, ex, dst = unique + "-src", unique + "-x", unique + "-dst"
    publish(broker, src, 5)
    api.put(shovel_path(unique), {"value": {
        "src-uri": "amqp://", "src-queue": src, "dest-uri": "amqp://", "dest-exchange": ex,
        "reconnect-delay": 0.2}})
    st = eventually(lambda: status(api, unique).get("state") == "terminated"
                    and status(api, unique), "terminated")
    assert f"no exchange '{ex}' in vhost '/'" in st["reason"]
    assert depth(api, src) == 5   # nothing lost while the destination is missing
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.exchange_declare(ex, "fanout")
    ch.queue_declare(dst)
    ch.queue_bind(dst, ex)
    conn.close()
    eventually(lambda: depth(api, dst) == 5, "moved once the exchange exists")
    assert depth(api, src) == 0
    api.delete(shovel_path(unique))
    no_traceback(broker)


# ------------------------------------------------------------------------------ remote ends
# A remote end here is this broker reached over the network (its AMQP port), as another
# broker would be: the shovel's link looks its queues up and declares them there.
def remote(broker, user: str = "guest", password: str = "guest") -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{broker.amqp_port}"


def queue_info(api, queue: str) -> dict:
    r = api.get(f"/api/queues/%2F/{queue}")
    return r.json() if r.status_code == 200 else {}


def test_missing_remote_queues_are_declared_on_the_first_connection(api, broker, unique):
    """As RabbitMQ's shovel: the passive declare that finds a queue missing goes on a
    throw-away channel, so the durable declare follows on the same connection. The
    reconnect-delay is 60 s: a shovel that waited for a second connection would not be
    running within the 30 s awaited here."""
    src, dst = unique + "-src", unique + "-dst"
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": remote(broker), "src-queue": src,
        "src-queue-args": {"x-max-length": 1000},
        "dest-uri": remote(broker), "dest-queue": dst,
        "dest-queue-args": {"x-queue-mode": "lazy"}, "reconnect-delay": 60}})
    assert r.status_code == 201, r.text
    eventually(lambda: status(api, unique).get("state") == "running", "running at once")
    for queue, args in ((src, {"x-max-length": 1000}), (dst, {"x-queue-mode": "lazy"})):
        info = queue_info(api, queue)
        assert info["durable"] is True and info["arguments"] == args, info
    publish(broker, src, 1, declare=False)
    eventually(lambda: depth(api, dst) == 1, "the first message moved")
    assert api.delete(shovel_path(unique)).status_code == 204
    assert [b for b, _ in drain(broker, dst)] == [f"{src}-0".encode()]
    no_traceback(broker)


def test_an_existing_remote_queue_with_other_arguments_is_used_as_it_is(api, broker, unique):
    """The passive declare finds it, so the definition's queue arguments are never
    compared with its own: no PRECONDITION_FAILED, the queue keeps its arguments."""
    src, dst = unique + "-src", unique + "-dst"
    seen = len(broker.lines)
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(src, durable=False, arguments={"x-max-length": 50})
    ch.queue_declare(dst, durable=False, arguments={"x-message-ttl": 600000})
    conn.close()
    r = api.put(shovel_path(unique), {"value": {
        "src-uri": remote(broker), "src-queue": src,
        "src-queue-args": {"x-max-length": 7},
        "dest-uri": remote(broker), "dest-queue": dst,
        "dest-queue-args": {"x-max-length": 3}, "reconnect-delay": 60}})
    assert r.status_code == 201, r.text
    eventually(lambda: status(api, unique).get("state") == "running", "running at once")
    publish(broker, src, 5, declare=False)
    eventually(lambda: depth(api, dst) == 5, "moved into the queue as it is")
    assert api.delete(shovel_path(unique)).status_code == 204
    assert queue_info(api, src)["arguments"] == {"x-max-length": 50}
    info = queue_info(api, dst)
    assert info["durable"] is False and info["arguments"] == {"x-message-ttl": 600000}
    assert len(drain(broker, dst)) == 5
    assert not any("PRECONDITION_FAILED" in line for line in broker.lines[seen:])
    no_traceback(broker)


def test_a_refused_remote_declare_takes_the_link_down_and_retries(api, broker, unique,
                                                                    make_user):
    """A user who may not configure the queue: the passive look finds it missing, the
    declare is refused (ACCESS_REFUSED), the status says so and the shovel retries every
    reconnect-delay until the permission is given; nothing at the source is lost."""
    src, dst = unique + "-src", unique + "-dst"
    user, password = make_user(perms=False)
    perms = {"configure": "^nothing$", "write": ".*", "read": ".*"}
    assert api.put(f"/api/permissions/%2F/{user}", perms).status_code == 201
    try:
        publish(broker, src, 3)
        api.put(shovel_path(unique), {"value": {
            "src-uri": "amqp://", "src-queue": src,
            "dest-uri": remote(broker, user, password), "dest-queue": dst,
            "reconnect-delay": 0.2}})
        st = eventually(lambda: status(api, unique).get("state") == "terminated"
                        and status(api, unique), "terminated")
        assert "ACCESS_REFUSED" in st["reason"] and dst in st["reason"], st
        assert queue_info(api, dst) == {} and depth(api, src) == 3
        assert api.put(f"/api/permissions/%2F/{user}", {**perms, "configure": ".*"}) \
            .status_code in (201, 204)
        eventually(lambda: depth(api, dst) == 3, "moved once the user may declare")
        assert depth(api, src) == 0
    finally:
        api.delete(shovel_path(unique))
    no_traceback(broker)


def test_a_locked_remote_queue_shows_why_and_is_declared_once_free(api, broker, unique):
    """A refusal of the passive look other than NOT_FOUND (the queue is another
    connection's exclusive queue: RESOURCE_LOCKED) takes the link down with the server's
    words; once that connection is gone the shovel declares the queue and runs."""
    src, dst = unique + "-src", unique + "-dst"
    owner = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    owner.channel().queue_declare(src, exclusive=True)
    api.put(shovel_path(unique), {"value": {
        "src-uri": remote(broker), "src-queue": src,
        "dest-uri": "amqp://", "dest-queue": dst, "reconnect-delay": 0.2}})
    try:
        st = eventually(lambda: status(api, unique).get("state") == "terminated"
                        and status(api, unique), "terminated")
        assert "RESOURCE_LOCKED" in st["reason"] and src in st["reason"], st
    finally:
        owner.close()
    eventually(lambda: status(api, unique).get("state") == "running"
               and queue_info(api, src).get("durable") is True, "declared and running")
    publish(broker, src, 2)
    eventually(lambda: depth(api, dst) == 2, "moved")
    api.delete(shovel_path(unique))
    no_traceback(broker)
