"""Network of brokers (DESIGN.md "HA and the network"): not built yet.

Bridges (demand forwarding over an AMQP connection, loop prevention by broker path and
``network_ttl``, duplex links) will live here; no issue has asked for them so far, and the
console shows "no bridges configured" until they exist.
"""
