"""/api/parameters, /api/global-parameters and ``warren ctl`` parameter commands.

The broker here is ``warren run`` with the test-only component ``test`` registered
(``tests/webconsole/param_broker.py``), the way RabbitMQ's HTTP suite registers its test
component; ``no-such-plugin`` is registered by nobody, so its requests show the
unknown-component answers (shovels have their own tests in tests/network).
Notifications are observed through the component's log lines (events, not sleeps).
"""

from __future__ import annotations

import jsonschema
import pytest
import requests

from tests.broker_process import BrokerProcess
from tests.webconsole.conftest import ApiClient
from tests.webconsole.test_ctl import ctl, rows


class ParamBroker(BrokerProcess):
    def command(self) -> list[str]:
        cmd = super().command()
        assert cmd[1:3] == ["-m", "warren"]
        return [cmd[0], "-m", "tests.webconsole.param_broker", *cmd[3:]]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with ParamBroker(tmp_path_factory.mktemp("param-broker")) as proc:
        yield proc


def path(name: str, vhost: str = "%2F", component: str = "test") -> str:
    return f"/api/parameters/{component}/{vhost}/{name}"


def schema_check(broker, name: str, body) -> None:
    doc = requests.get(broker.http_url + "/api/openapi.json", timeout=30).json()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                     "components": doc["components"]}).validate(body)


def no_traceback(broker) -> None:
    assert not any("Traceback" in line for line in broker.lines), broker.log()


def test_put_get_list_delete(api, broker, unique):
    assert api.put(path(unique), {"value": {"n": 1}}).status_code == 201
    broker.wait_for_line(f"component test: set vhost=/ name={unique} value={{'n': 1}}")
    assert api.put(path(unique), {"value": {"n": 1}}).status_code == 204
    r = api.put(path(unique), {"value": {"n": 2}, "component": "ignored", "name": "x"})
    assert r.status_code == 204
    broker.wait_for_line(f"component test: set vhost=/ name={unique} value={{'n': 2}}")
    want = {"value": {"n": 2}, "vhost": "/", "component": "test", "name": unique}
    got = api.get(path(unique))
    assert got.status_code == 200 and got.json() == want
    schema_check(broker, "Parameter", got.json())
    for listing in ("/api/parameters", "/api/parameters/test", "/api/parameters/test/%2F"):
        items = api.get(listing).json()
        assert want in items, listing
        for item in items:
            schema_check(broker, "Parameter", item)
    assert api.get("/api/parameters/test/%2F", params={"columns": "name"}).json().count(
        {"name": unique}) == 1
    assert api.get("/api/parameters/other").json() == []
    assert api.request("HEAD", path(unique)).status_code == 200

    assert api.delete(path(unique)).status_code == 204
    broker.wait_for_line(f"component test: cleared vhost=/ name={unique}")
    assert api.get(path(unique)).status_code == 404
    assert api.delete(path(unique)).status_code == 404
    assert want not in api.get("/api/parameters").json()
    no_traceback(broker)


def test_unknown_component_is_refused_as_rabbitmq(api, broker, unique):
    r = api.put(path(unique, component="no-such-plugin"),
                {"value": {"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://",
                           "dest-queue": "b"}})
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request",
                        "reason": "Validation failed\n\ncomponent no-such-plugin not found\n"}
    assert api.get("/api/parameters/no-such-plugin").json() == []
    assert api.get("/api/parameters/no-such-plugin/%2F").json() == []
    assert api.get(path(unique, component="no-such-plugin")).status_code == 404
    assert api.delete(path(unique, component="no-such-plugin")).status_code == 404
    no_traceback(broker)


@pytest.mark.parametrize("body, reason", [
    ({"n": 1}, "[{key_missing,value}]"),
    ([1, 2], "payload must be a JSON object"),
    ({"value": [1]}, "Validation failed\n\nvalue must be a JSON object\n"),
    ({"value": {"n": "1", "x": 2}}, "Validation failed\n\nunknown key: x\nn must be an integer\n"),
    ({"value": {"n": 1, "<b>&": 0}}, "Validation failed\n\nunknown key: &lt;b&gt;&amp;\n"),
    ({"value": None}, "Validation failed\n\nvalue must be a JSON object\n"),
])
def test_bad_values_are_400_and_nothing_is_stored(api, broker, unique, body, reason):
    r = api.put(path(unique), body)
    assert r.status_code == 400 and r.json() == {"error": "bad_request", "reason": reason}
    assert api.get(path(unique)).status_code == 404
    assert not [p for p in api.get("/api/parameters").json() if p["name"] == unique]
    no_traceback(broker)


def test_other_bad_requests(api, broker, unique):
    r = api.request("PUT", path(unique), data=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"].startswith("payload not valid JSON")
    r = api.put(path(unique, component="policy"), {"value": {"pattern": ".*"}})
    assert r.json() == {"error": "bad_request",
                        "reason": "policies may not be set using this method"}
    r = api.put(path(unique, vhost="no-such-vhost"), {"value": {"n": 1}})
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "reason": "vhost_not_found"}
    assert api.delete(path(unique, vhost="no-such-vhost")).status_code == 404
    assert api.get(path(unique, vhost="no-such-vhost")).status_code == 404
    assert api.get("/api/parameters/test/no-such-vhost").status_code == 404
    assert api.request("POST", path(unique), json={"value": {"n": 1}}).status_code == 405
    assert requests.get(broker.http_url + "/api/parameters", timeout=30).status_code == 401
    assert not [p for p in api.get("/api/parameters").json() if p["name"] == unique]
    no_traceback(broker)


def test_who_may_read_and_write(api, broker, make_user, unique):
    vhost = unique
    assert api.put(f"/api/vhosts/{vhost}").status_code == 201
    assert api.put(path("in-other", vhost=vhost), {"value": {"n": 9}}).status_code == 201

    mgmt = ApiClient(broker.http_url, make_user("management"))
    r = mgmt.get("/api/parameters")
    assert r.status_code == 403 and r.json()["reason"] == "Not policymaker user"
    assert mgmt.put(path(unique), {"value": {"n": 1}}).status_code == 403

    pm = ApiClient(broker.http_url, make_user("policymaker"))   # permissions on / only
    assert pm.put(path(unique), {"value": {"n": 1}}).status_code == 201
    assert pm.get(path(unique)).json()["value"] == {"n": 1}
    names = {p["name"] for p in pm.get("/api/parameters").json()}
    assert unique in names and "in-other" not in names
    assert pm.put(path("x", vhost=vhost), {"value": {"n": 1}}).status_code == 403
    assert pm.delete(path("in-other", vhost=vhost)).status_code == 403
    assert pm.get(path("in-other", vhost=vhost)).status_code == 403
    assert pm.get(f"/api/parameters/test/{vhost}").status_code == 403
    assert pm.delete(path(unique)).status_code == 204
    assert api.get(path("in-other", vhost=vhost)).json()["value"] == {"n": 9}

    # deleting the vhost clears its parameters and tells the component
    assert api.delete(f"/api/vhosts/{vhost}").status_code == 204
    broker.wait_for_line(f"component test: cleared vhost={vhost} name=in-other")
    assert not [p for p in api.get("/api/parameters").json() if p["vhost"] == vhost]


def test_global_parameters(api, broker, make_user):
    r = api.get("/api/global-parameters")
    assert r.status_code == 200
    [cluster] = [p for p in r.json() if p["name"] == "cluster_name"]
    assert cluster["value"] == api.get("/api/cluster-name").json()["name"]
    schema_check(broker, "GlobalParameter", cluster)
    assert api.get("/api/global-parameters/cluster_name").json() == cluster
    assert api.get("/api/global-parameters/nope").status_code == 404
    pm = ApiClient(broker.http_url, make_user("policymaker"))
    assert pm.get("/api/global-parameters").status_code == 403


def test_definitions_export_and_import(api, broker, unique):
    assert api.put(path(unique), {"value": {"n": 3}}).status_code == 201
    item = {"value": {"n": 3}, "vhost": "/", "component": "test", "name": unique}
    assert item in api.get("/api/definitions").json()["parameters"]
    per_vhost = api.get("/api/definitions/%2F").json()["parameters"]
    assert {k: v for k, v in item.items() if k != "vhost"} in per_vhost

    # a file with a parameter of an unknown component: 400 with RabbitMQ's reason, nothing
    # of it imported
    doc = {"vhosts": [{"name": unique + "-v"}],
           "queues": [{"name": unique + "-q", "vhost": "/", "durable": True}],
           "parameters": [{"value": {"src-uri": "amqp://"}, "vhost": "/",
                           "component": "no-such-plugin", "name": "s1"}]}
    r = api.post("/api/definitions", doc)
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request", "reason": (
        "Validation failed\n\ncomponent no-such-plugin not found\n (//no-such-plugin/s1)")}
    assert api.get(f"/api/vhosts/{unique}-v").status_code == 404
    assert api.get(f"/api/queues/%2F/{unique}-q").status_code == 404

    # a registered component's parameter imports and reaches its component
    doc["parameters"] = [{"value": {"n": 4}, "vhost": unique + "-v", "component": "test",
                          "name": "imported"}]
    assert api.post("/api/definitions", doc).status_code == 204
    broker.wait_for_line(f"component test: set vhost={unique}-v name=imported value={{'n': 4}}")
    assert api.get(path("imported", vhost=unique + "-v")).json()["value"] == {"n": 4}
    r = api.post("/api/definitions/%2F", {"parameters": [
        {"value": {"n": 5}, "component": "test", "name": unique + "-pv"}]})
    assert r.status_code == 204
    assert api.get(path(unique + "-pv")).json()["value"] == {"n": 5}
    api.delete(f"/api/vhosts/{unique}-v")
    api.delete(f"/api/queues/%2F/{unique}-q")
    api.delete(path(unique))
    api.delete(path(unique + "-pv"))
    no_traceback(broker)


def test_ctl_set_list_clear(broker, unique):
    out = ctl(broker, "set_parameter", "test", unique, '{"n": 6}').stdout
    assert out == (f'Setting runtime parameter "{unique}" for component "test" to '
                   f'"{{"n": 6}}" in vhost "/" ...\n')
    assert ["test", unique, '{"n": 6}'] in rows(ctl(broker, "list_parameters").stdout)
    assert ctl(broker, "list_parameters").stdout.startswith("component\tname\tvalue\n")
    ctl(broker, "add_vhost", unique)
    ctl(broker, "set_parameter", "-V", unique, "test", "in-v", '{"n": 7}')
    assert rows(ctl(broker, "-V", unique, "list_parameters").stdout) == [
        ["test", "in-v", '{"n": 7}']]
    ctl(broker, "clear_parameter", "-V", unique, "test", "in-v")
    assert rows(ctl(broker, "list_parameters", "-V", unique).stdout) == []

    bad = ctl(broker, "set_parameter", "test", unique, "{not json", check=False)
    assert bad.returncode == 2 and "JSON decoding error" in bad.stderr
    bad = ctl(broker, "set_parameter", "no-such-plugin", unique, "{}", check=False)
    assert bad.returncode == 2
    assert "400: Validation failed\n\ncomponent no-such-plugin not found" in bad.stderr
    bad = ctl(broker, "set_parameter", "test", unique, '{"n": true}', check=False)
    assert bad.returncode == 2 and "n must be an integer" in bad.stderr
    out = ctl(broker, "clear_parameter", "test", unique).stdout
    assert out == (f'Clearing runtime parameter "{unique}" for component "test" on vhost '
                   f'"/" ...\n')
    bad = ctl(broker, "clear_parameter", "test", unique, check=False)
    assert bad.returncode == 2
    assert f"parameter '{unique}' of component 'test' not found in vhost '/'" in bad.stderr
    assert "Traceback" not in bad.stderr
    ctl(broker, "delete_vhost", unique)


def test_parameters_survive_restart_and_reach_the_component(api, broker, unique):
    # last in the module: it restarts the module's broker
    assert api.put(path(unique), {"value": {"n": 8}}).status_code == 201
    assert api.put(path(unique + "-gone"), {"value": {"n": 1}}).status_code == 201
    assert api.delete(path(unique + "-gone")).status_code == 204
    broker.restart()
    broker.wait_for_line(f"component test: set vhost=/ name={unique} value={{'n': 8}}")
    assert api.get(path(unique)).json() == {"value": {"n": 8}, "vhost": "/",
                                            "component": "test", "name": unique}
    assert api.get(path(unique + "-gone")).status_code == 404
    no_traceback(broker)

    # an answered PUT or DELETE is durable: kill -9 right after it loses neither
    assert api.put(path(unique + "-k"), {"value": {"n": 10}}).status_code == 201
    assert api.delete(path(unique)).status_code == 204
    broker.kill()
    broker.start()
    broker.wait_for_line(f"component test: set vhost=/ name={unique}-k value={{'n': 10}}")
    assert api.get(path(unique + "-k")).json()["value"] == {"n": 10}
    assert api.get(path(unique)).status_code == 404
    no_traceback(broker)
