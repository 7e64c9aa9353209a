"""``warren ctl`` as a subprocess against a running broker's API."""

from __future__ import annotations

import json
import subprocess
import sys

import requests


def ctl(broker, *args: str, user: str = "guest", password: str = "guest",
        check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "warren", "ctl", "--url", broker.http_url, "-u", user,
           "-p", password, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def rows(out: str) -> list[list[str]]:
    return [line.split("\t") for line in out.rstrip("\n").splitlines()[1:]]


def test_users_vhosts_permissions(broker, unique):
    ctl(broker, "add_vhost", unique)
    assert [unique] in rows(ctl(broker, "list_vhosts").stdout)
    ctl(broker, "add_user", unique, "pw", "--tags", "management")
    assert [unique, '["management"]'] in rows(ctl(broker, "list_users").stdout)
    ctl(broker, "--vhost", unique, "set_permissions", unique, ".*", ".*", ".*")
    ctl(broker, "set_user_tags", unique, "monitoring", "management")
    r = requests.get(broker.http_url + "/api/whoami", auth=(unique, "pw"), timeout=30)
    assert r.json()["tags"] == ["monitoring", "management"]     # password kept
    ctl(broker, "--vhost", unique, "list_queues", user=unique, password="pw")
    failed = ctl(broker, "list_users", user=unique, password="pw", check=False)
    assert failed.returncode != 0 and "403" in failed.stderr
    ctl(broker, "delete_user", unique)
    ctl(broker, "delete_vhost", unique)
    assert [unique] not in rows(ctl(broker, "list_vhosts").stdout)
    failed = ctl(broker, "delete_vhost", unique, check=False)
    assert failed.returncode == 2 and f"vhost '{unique}' not found" in failed.stderr


def test_lists_policies_purge_move_delete(broker, unique):
    api = requests.Session()
    api.auth = ("guest", "guest")
    base = broker.http_url
    for suffix in ("a", "b"):
        api.put(f"{base}/api/queues/%2F/{unique}-{suffix}", json={"durable": True}, timeout=30)
    api.put(f"{base}/api/exchanges/%2F/{unique}", json={"type": "fanout"}, timeout=30)
    api.post(f"{base}/api/bindings/%2F/e/{unique}/q/{unique}-a", json={}, timeout=30)
    for i in range(4):
        api.post(f"{base}/api/exchanges/%2F/{unique}/publish",
                 json={"routing_key": "", "payload": str(i), "properties": {}}, timeout=30)
    assert [f"{unique}-a", "4"] in rows(ctl(broker, "list_queues").stdout)
    assert [f"{unique}-a", "4", "true"] in rows(
        ctl(broker, "--vhost", "/", "list_queues", "name", "messages", "durable").stdout)
    assert [unique, "fanout"] in rows(ctl(broker, "list_exchanges").stdout)
    assert [unique, f"{unique}-a", "queue", ""] in rows(ctl(broker, "list_bindings").stdout)
    assert ctl(broker, "list_connections").stdout.startswith("name\tuser")

    out = ctl(broker, "move_messages", f"{unique}-a", f"{unique}-b", "--count", "3").stdout
    assert "moved 3 messages" in out
    assert "moved 1 messages" in ctl(broker, "move_messages", f"{unique}-a",
                                     f"{unique}-b").stdout
    assert [f"{unique}-b", "4"] in rows(ctl(broker, "list_queues").stdout)

    ctl(broker, "set_policy", unique, f"^{unique}-b$", '{"max-length": 100}',
        "--priority", "2", "--apply-to", "queues")
    pol = [r for r in rows(ctl(broker, "list_policies").stdout) if r[1] == unique]
    assert pol == [["/", unique, f"^{unique}-b$", "queues", '{"max-length": 100}', "2"]]
    bad = ctl(broker, "set_policy", unique, ".*", "{not json", check=False)
    assert bad.returncode == 2
    ctl(broker, "clear_policy", unique)

    ctl(broker, "purge_queue", f"{unique}-b")
    assert [f"{unique}-b", "0"] in rows(ctl(broker, "list_queues").stdout)
    ctl(broker, "delete_queue", f"{unique}-a")
    ctl(broker, "delete_queue", f"{unique}-b")
    assert not [r for r in rows(ctl(broker, "list_queues").stdout) if r[0].startswith(unique)]


def test_export_import_round_trip(broker, unique, tmp_path):
    api = requests.Session()
    api.auth = ("guest", "guest")
    base = broker.http_url
    api.put(f"{base}/api/vhosts/{unique}", json={}, timeout=30)
    api.put(f"{base}/api/queues/{unique}/q1", json={"durable": True,
                                                    "arguments": {"x-max-length": 7}}, timeout=30)
    api.put(f"{base}/api/exchanges/{unique}/x1", json={"type": "topic"}, timeout=30)
    api.post(f"{base}/api/bindings/{unique}/e/x1/q/q1", json={"routing_key": "k.#"}, timeout=30)
    api.put(f"{base}/api/users/{unique}", json={"password": "pw", "tags": "management"},
            timeout=30)
    api.put(f"{base}/api/permissions/{unique}/{unique}",
            json={"configure": "c", "write": "w", "read": "r"}, timeout=30)
    api.put(f"{base}/api/policies/{unique}/p1",
            json={"pattern": "^q", "definition": {"max-length": 9}}, timeout=30)
    path = tmp_path / "defs.json"
    ctl(broker, "export_definitions", str(path))
    defs = json.loads(path.read_text())
    assert {"users", "vhosts", "permissions", "policies", "queues", "exchanges",
            "bindings"} <= set(defs)

    # wipe, import, compare
    api.delete(f"{base}/api/vhosts/{unique}", timeout=30)
    api.delete(f"{base}/api/users/{unique}", timeout=30)
    ctl(broker, "import_definitions", str(path))
    q1 = api.get(f"{base}/api/queues/{unique}/q1", timeout=30).json()
    assert q1["durable"] is True and q1["arguments"] == {"x-max-length": 7}
    assert q1["policy"] == "p1"
    assert api.get(f"{base}/api/exchanges/{unique}/x1", timeout=30).json()["type"] == "topic"
    b = api.get(f"{base}/api/bindings/{unique}/e/x1/q/q1", timeout=30).json()
    assert [x["routing_key"] for x in b] == ["k.#"]
    assert requests.get(f"{base}/api/whoami", auth=(unique, "pw"), timeout=30).ok
    perm = api.get(f"{base}/api/permissions/{unique}/{unique}", timeout=30).json()
    assert (perm["configure"], perm["write"], perm["read"]) == ("c", "w", "r")
    # a second import of the same file changes nothing and succeeds
    ctl(broker, "import_definitions", str(path))
    ctl(broker, "export_definitions", str(tmp_path / "again.json"))
    again = json.loads((tmp_path / "again.json").read_text())
    for section in ("queues", "exchanges", "bindings", "policies", "permissions"):
        assert [x for x in again[section] if x.get("vhost") == unique] == \
            [x for x in defs[section] if x.get("vhost") == unique]
    api.delete(f"{base}/api/vhosts/{unique}", timeout=30)
    api.delete(f"{base}/api/users/{unique}", timeout=30)


def test_unreachable_broker_is_an_error_not_a_traceback(tmp_path):
    cmd = [sys.executable, "-m", "warren", "ctl", "--url", "http://127.0.0.1:1", "list_queues"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot reach" in proc.stderr
    assert "Traceback" not in proc.stderr
