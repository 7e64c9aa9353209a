"""BEGIN/COMMIT/ABORT over SEND and ACK/NACK."""

from __future__ import annotations


def test_commit_publishes_held_sends(client, unique):
    q = f"/queue/{unique}"
    client.subscribe(q)
    client.conn.begin("tx1")
    client.conn.send(q, "in-tx", transaction="tx1")
    client.send(q, "outside")
    assert client.recorder.message().body == "outside"
    client.conn.commit("tx1")
    assert client.recorder.message().body == "in-tx"


def test_abort_drops_held_sends(client, unique):
    q = f"/queue/{unique}"
    client.subscribe(q)
    client.conn.begin("tx2")
    client.conn.send(q, "dropped", transaction="tx2")
    client.conn.abort("tx2")
    client.send(q, "kept")
    assert client.recorder.message().body == "kept"


def test_ack_in_transaction_applies_at_commit(client_factory, version, unique):
    c = client_factory(version)
    q = f"/queue/{unique}"
    c.subscribe(q, ack="client-individual")
    c.send(q, "a")
    frame = c.recorder.message()
    c.conn.begin("tx")
    c.ack(frame, transaction="tx")
    c.conn.abort("tx")
    c.conn.disconnect()          # not acked: comes back
    d = client_factory(version)
    d.subscribe(q, ack="client-individual")
    again = d.recorder.message()
    assert again.body == "a"
    d.conn.begin("tx")
    d.ack(again, transaction="tx")
    d.conn.commit("tx")
    d.sync()
    d.conn.disconnect()          # acked at commit: gone
    e = client_factory(version)
    e.subscribe(q)
    e.send(q, "b")
    assert e.recorder.message().body == "b"


def test_unknown_transaction_is_error(client_factory, unique):
    c = client_factory("1.2")
    c.conn.send(f"/queue/{unique}", "x", transaction="nope")
    assert c.recorder.error().headers["message"] == "Bad transaction"


def test_commit_without_transaction_header_is_error(client_factory):
    c = client_factory("1.2")
    c.conn.send_frame("COMMIT", {})
    assert c.recorder.error().headers["message"] == "Missing header 'transaction'"
