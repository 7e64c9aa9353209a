"""A definitions import bigger than one slice (a reactor turn's budget of objects): the
answer comes once every object exists, and an object that fails stops the import with its
error, as when the import was done in one go. Durations are in bench/, never asserted."""

from __future__ import annotations

#: more objects than one reactor turn applies (some hundreds: turn_slices.turn_deadline)
IMPORT_SLICE = 1000

N = IMPORT_SLICE * 2 + 11


def test_a_big_import_is_answered_when_every_object_exists(api, unique):
    queues = [{"name": f"{unique}-{i}", "vhost": "/", "durable": True, "auto_delete": False,
               "arguments": {}} for i in range(N)]
    bindings = [{"source": "amq.topic", "vhost": "/", "destination": q["name"],
                 "destination_type": "queue", "routing_key": f"{unique}.{i}.#",
                 "arguments": {}} for i, q in enumerate(queues)]
    r = api.post("/api/definitions", {"queues": queues, "bindings": bindings}, timeout=120)
    assert r.status_code == 204, r.text
    last = queues[-1]["name"]
    assert api.get(f"/api/queues/%2F/{last}").status_code == 200
    b = api.get(f"/api/bindings/%2F/e/amq.topic/q/{last}").json()
    assert [x["routing_key"] for x in b] == [f"{unique}.{N - 1}.#"]
    listed = {q["name"] for q in api.get("/api/queues/%2F", params={"columns": "name"}).json()}
    assert {q["name"] for q in queues} <= listed


def test_an_object_that_fails_in_a_later_slice_fails_the_import(api, unique):
    queues = [{"name": f"{unique}-{i}", "vhost": "/", "durable": True, "auto_delete": False,
               "arguments": {}} for i in range(IMPORT_SLICE + 5)]
    # a binding to a queue that does not exist, after a slice of queues
    bindings = [{"source": "amq.topic", "vhost": "/", "destination": f"{unique}-missing",
                 "destination_type": "queue", "routing_key": "k", "arguments": {}}]
    r = api.post("/api/definitions", {"queues": queues, "bindings": bindings}, timeout=120)
    assert r.status_code == 404, r.text
    assert api.get(f"/api/queues/%2F/{unique}-{IMPORT_SLICE + 4}").status_code == 200
