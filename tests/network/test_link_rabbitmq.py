"""The link against a real RabbitMQ.

``WARREN_RABBITMQ_URL`` (an ``amqp://`` URI) names a running RabbitMQ to use; without it the
session's private node (``tests/network/rabbitmq.py``: Debian's rabbitmq-server, installed
when missing) is used.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.network.link_driver import body_for


@pytest.fixture(scope="module")
def rabbitmq_url(request):
    url = os.environ.get("WARREN_RABBITMQ_URL")
    if url:
        return url
    return request.getfixturevalue("rabbitmq_node").url


def test_link_round_trip_with_rabbitmq(rabbitmq_url, unique, link_driver):
    link = link_driver(rabbitmq_url + "?frame_max=4096")
    link.event("ready")
    link.call("declare_queue", queue=unique)
    props = {"delivery_mode": 2, "headers": {"x-shovelled": {"src": "warren"}}}
    assert link.call("publish", routing_key=unique, count=20, size=10_000,
                     properties=props)["confirmed"] == 20
    got = link.call("consume", queue=unique, count=20)
    assert got["bodies"] == [hashlib.sha256(body_for(i, 10_000)).hexdigest()
                             for i in range(20)]
    assert got["properties"][0]["headers"] == props["headers"]
    link.call("close")


def test_wrong_password_with_rabbitmq(rabbitmq_url, link_driver):
    bad = rabbitmq_url.replace("guest:guest@", "guest:wrong@")
    link = link_driver(bad)
    line = link.event("state", reason=lambda r: "ACCESS_REFUSED" in (r or ""))
    assert "wrong" not in line["reason"]
