"""Password hashing as RabbitMQ's ``password_hashing_module``: SHA-256 by default, SHA-512
when the operator chooses it; hashes of either kind import and log in whatever the setting."""

from __future__ import annotations

import base64
import hashlib

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.webconsole.conftest import ApiClient

SHA512 = "rabbit_password_hashing_sha512"
SHA256 = "rabbit_password_hashing_sha256"


def rabbit_hash(password: str, digest, salt: bytes = b"\x01\x02\x03\x04") -> str:
    """A hash as RabbitMQ writes it: base64(salt + digest(salt + password))."""
    return base64.b64encode(salt + digest(salt + password.encode()).digest()).decode()


@pytest.fixture(scope="module")
def sha512_broker(tmp_path_factory):
    broker = BrokerProcess(tmp_path_factory.mktemp("sha512"),
                           env={"WARREN_PASSWORD_HASHING_MODULE": SHA512})
    broker.start()
    yield broker
    broker.stop()
    broker.kill()


def logs_in(broker, user: str, password: str) -> bool:
    try:
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, credentials=pika.PlainCredentials(user, password),
            connection_attempts=1)).close()
        return True
    except pika.exceptions.ProbableAuthenticationError:
        return False


def test_new_passwords_use_the_chosen_module(sha512_broker, unique):
    api = ApiClient(sha512_broker.http_url)
    assert api.put(f"/api/users/{unique}", {"password": "pw", "tags": ""}).status_code == 201
    api.put(f"/api/permissions/%2F/{unique}", {"configure": ".*", "write": ".*", "read": ".*"})
    info = api.get(f"/api/users/{unique}").json()
    assert info["hashing_algorithm"] == SHA512
    assert len(base64.b64decode(info["password_hash"])) == 4 + 64
    assert logs_in(sha512_broker, unique, "pw") and not logs_in(sha512_broker, unique, "no")
    # survives a restart with its module
    sha512_broker.restart()
    assert api.get(f"/api/users/{unique}").json()["hashing_algorithm"] == SHA512
    assert logs_in(sha512_broker, unique, "pw")


@pytest.mark.parametrize("module,digest", [(SHA256, hashlib.sha256), (SHA512, hashlib.sha512)])
def test_imported_hashes_of_either_module_log_in(sha512_broker, unique, module, digest):
    api = ApiClient(sha512_broker.http_url)
    doc = {"users": [{"name": unique, "password_hash": rabbit_hash("imported", digest),
                      "hashing_algorithm": module, "tags": ""}],
           "permissions": [{"user": unique, "vhost": "/", "configure": ".*", "write": ".*",
                            "read": ".*"}]}
    assert api.post("/api/definitions", doc).status_code in (200, 201, 204)
    assert api.get(f"/api/users/{unique}").json()["hashing_algorithm"] == module
    assert logs_in(sha512_broker, unique, "imported")


def test_unknown_module_is_refused(sha512_broker, unique):
    api = ApiClient(sha512_broker.http_url)
    r = api.put(f"/api/users/{unique}", {"password_hash": rabbit_hash("x", hashlib.md5),
                                         "hashing_algorithm": "rabbit_password_hashing_md4"})
    assert r.status_code == 400
    assert api.get(f"/api/users/{unique}").status_code == 404


def test_a_bad_module_setting_stops_the_start(tmp_path):
    broker = BrokerProcess(tmp_path, env={"WARREN_PASSWORD_HASHING_MODULE": "sha1"})
    broker.start(wait=False)
    assert broker.proc.wait(60) != 0
    broker.kill()
    errors = [line for line in broker.lines if " ERROR " in line]
    assert len(errors) == 1 and "WARREN_PASSWORD_HASHING_MODULE=sha1" in errors[0], broker.log()
