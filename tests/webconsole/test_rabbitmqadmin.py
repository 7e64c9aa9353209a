"""RabbitMQ's own rabbitmqadmin (from Debian's rabbitmq-server package) against warren.

Debian's package is installed when missing, or these tests skipped with
WARREN_TEST_SKIP_MISSING (``tests/missing_tools.py``); the same calls are covered with requests
in test_api.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.missing_tools import tool_missing
from tests.network.rabbitmq import ensure_rabbitmq


def rabbitmqadmin() -> str:
    """The rabbitmqadmin script of Debian's rabbitmq-server package."""
    ensure_rabbitmq()
    found = shutil.which("rabbitmqadmin")
    if found is None:
        tool_missing("rabbitmqadmin", "Debian's rabbitmq-server package installs "
                     "/usr/bin/rabbitmqadmin; put it on PATH")
    return found


def admin(broker, *args: str) -> str:
    cmd = [sys.executable, rabbitmqadmin(), "-H", "127.0.0.1", "-P", str(broker.http_port),
           "-u", "guest", "-p", "guest", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def admin_json(broker, *args: str):
    return json.loads(admin(broker, "-f", "raw_json", *args))


def test_declare_list_publish_get_delete(broker, unique):
    assert "queue declared" in admin(broker, "declare", "queue", f"name={unique}",
                                     "durable=true", 'arguments={"x-max-length": 100}')
    assert "exchange declared" in admin(broker, "declare", "exchange", f"name={unique}",
                                        "type=topic")
    assert "binding declared" in admin(broker, "declare", "binding", f"source={unique}",
                                       f"destination={unique}", "routing_key=a.#")
    queues = {q["name"]: q for q in admin_json(broker, "list", "queues")}
    assert queues[unique]["durable"] is True and queues[unique]["messages"] == 0
    assert any(e["name"] == unique and e["type"] == "topic"
               for e in admin_json(broker, "list", "exchanges"))
    assert any(b["source"] == unique and b["routing_key"] == "a.#"
               for b in admin_json(broker, "list", "bindings"))
    admin(broker, "publish", f"exchange={unique}", "routing_key=a.b", "payload=hello",
          'properties={"headers": {"k": "v"}}')
    admin(broker, "publish", f"routing_key={unique}", "payload=direct")
    out = admin(broker, "publish", f"exchange={unique}", "routing_key=nowhere",
                "payload=lost")
    assert "NOT routed" in out
    got = admin_json(broker, "get", f"queue={unique}", "count=2", "ackmode=ack_requeue_true")
    assert [m["payload"] for m in got] == ["hello", "direct"]
    assert got[0]["properties"]["headers"] == {"k": "v"}
    got = admin_json(broker, "get", f"queue={unique}", "ackmode=ack_requeue_false")
    assert got[0]["payload"] == "hello" and got[0]["redelivered"] is True
    listed = admin(broker, "list", "queues", "name", "messages")
    assert unique in listed
    assert "queue purged" in admin(broker, "purge", "queue", f"name={unique}")
    assert "binding deleted" in admin(broker, "delete", "binding", f"source={unique}",
                                      "destination_type=queue", f"destination={unique}",
                                      "properties_key=a.%23")
    assert not any(b["source"] == unique for b in admin_json(broker, "list", "bindings"))
    assert "queue deleted" in admin(broker, "delete", "queue", f"name={unique}")
    assert "exchange deleted" in admin(broker, "delete", "exchange", f"name={unique}")
    assert unique not in admin(broker, "list", "queues")


def test_users_vhosts_permissions_policies_overview(broker, unique, tmp_path):
    admin(broker, "declare", "vhost", f"name={unique}")
    admin(broker, "declare", "user", f"name={unique}", "password=pw", "tags=management")
    admin(broker, "declare", "permission", f"vhost={unique}", f"user={unique}",
          "configure=.*", "write=.*", "read=.*")
    admin(broker, "declare", "policy", f"--vhost={unique}", "name=p", "pattern=^x",
          'definition={"max-length": 5}', "priority=1", "apply-to=queues")
    assert any(p["name"] == "p" and p["vhost"] == unique
               for p in admin_json(broker, "list", "policies"))
    assert any(u["name"] == unique for u in admin_json(broker, "list", "users"))
    assert any(v["name"] == unique for v in admin_json(broker, "list", "vhosts"))
    assert any(p["user"] == unique for p in admin_json(broker, "list", "permissions"))
    assert admin_json(broker, "list", "nodes")[0]["name"] == "warren@localhost"
    overview = admin_json(broker, "show", "overview")
    assert overview[0]["rabbitmq_version"]
    admin(broker, "list", "connections")
    admin(broker, "list", "channels")
    admin(broker, "list", "consumers")
    path = tmp_path / "defs.json"
    admin(broker, "export", str(path))
    assert json.loads(path.read_text())["vhosts"]
    admin(broker, "import", str(path))
    admin(broker, "delete", "policy", f"--vhost={unique}", "name=p")
    admin(broker, "delete", "permission", f"vhost={unique}", f"user={unique}")
    admin(broker, "delete", "user", f"name={unique}")
    admin(broker, "delete", "vhost", f"name={unique}")
    assert not any(v["name"] == unique for v in admin_json(broker, "list", "vhosts"))
