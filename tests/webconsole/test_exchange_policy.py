"""``policy`` on /api/exchanges: the name of the policy an exchange is under, as RabbitMQ's
management API shows it for queues and exchanges (null when none applies)."""

from __future__ import annotations

import requests


def _q(s: str) -> str:
    return requests.utils.quote(s, safe="")


def test_exchange_shows_the_policy_it_is_under(api, unique):
    ex = f"/api/exchanges/%2F/{_q(unique)}"
    assert api.put(ex, {"type": "fanout"}).status_code in (201, 204)
    assert api.get(ex).json()["policy"] is None
    low = f"/api/policies/%2F/{_q(unique + '-low')}"
    high = f"/api/policies/%2F/{_q(unique + '-high')}"
    queues_only = f"/api/policies/%2F/{_q(unique + '-q')}"
    # a queues-only policy, however high, is not the exchange's
    assert api.put(queues_only, {"pattern": f"^{unique}", "definition": {"max-length": 1},
                                 "priority": 9, "apply-to": "queues"}).status_code == 201
    assert api.get(ex).json()["policy"] is None
    assert api.put(low, {"pattern": f"^{unique}", "definition": {"alternate-exchange": "ae"},
                         "priority": 1, "apply-to": "exchanges"}).status_code == 201
    assert api.get(ex).json()["policy"] == unique + "-low"
    assert api.put(high, {"pattern": f"^{unique}$", "definition": {"alternate-exchange": "b"},
                          "priority": 2, "apply-to": "all"}).status_code == 201
    got = api.get(ex).json()
    assert got["policy"] == unique + "-high"
    listed = [e for e in api.get("/api/exchanges/%2F").json() if e["name"] == unique]
    assert listed[0]["policy"] == unique + "-high"
    assert api.delete(high).status_code == 204
    assert api.get(ex).json()["policy"] == unique + "-low"
    assert api.delete(low).status_code == 204
    assert api.delete(queues_only).status_code == 204
    assert api.get(ex).json()["policy"] is None
    # an exchange declared under an existing policy has it from the start
    assert api.put(low, {"pattern": f"^{unique}", "definition": {"alternate-exchange": "ae"},
                         "apply-to": "exchanges"}).status_code == 201
    later = f"/api/exchanges/%2F/{_q(unique + '.later')}"
    assert api.put(later, {"type": "direct"}).status_code in (201, 204)
    assert api.get(later).json()["policy"] == unique + "-low"
    api.delete(low)
    api.delete(later)
    api.delete(ex)
