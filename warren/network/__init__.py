"""Network of brokers (DESIGN.md "HA and the network"): links to other brokers.

What every bridge (shovels, federation, network connectors) stands on is here: an AMQP 0-9-1
*client* connection made from inside the broker, on the reactor, with no blocking client
library. Layered like a front end (STYLE P2), so each part can be tested on its own:

- :mod:`.uri` parses RabbitMQ-style ``amqp://`` / ``amqps://`` URIs (a shovel definition copied
  from RabbitMQ means the same here) and gives them a form without the password to log;
- :mod:`.client` is the sans-I/O protocol machine on pamqp: bytes in, :mod:`.events` out;
  :mod:`.properties` turns content headers into plain dicts and back;
- :mod:`.protocol` is the Twisted glue (bytes, heartbeats); :mod:`.tls` the ``amqps`` options;
- :mod:`.link` keeps one connection up over a list of URIs (failover, capped backoff,
  Connection.Blocked, one log line per state change) and hands its user a
  :mod:`.channel` in confirm mode each time it connects.

Bridges built on them:

- :mod:`.shovel`: RabbitMQ's dynamic shovels, a runtime parameter of component ``shovel``;
  each end is either a Link (another broker) or this broker's core (``amqp://``, in-process).
- :mod:`.federation`: RabbitMQ's federation, components ``federation-upstream`` and
  ``federation-upstream-set`` plus the policy keys; one Link per federated exchange or queue
  and upstream, moving into this broker's core in-process (the ``x-federation-upstream``
  exchange type an upstream needs is in ``warren.exchange``, core-side).

- :mod:`.connector`: ActiveMQ-style network connectors from ``[[network]]`` config tables
  (:mod:`.connector_config`): one Link per connector pushing included topics and queues to
  the peer with confirms, on the peer's demand, ``duplex`` pulling back over the same
  connection, loops stopped by the ``x-network-path`` broker path and ``network_ttl``.

This package may use the core (``warren.broker``), as a front end does, and imports no front
end (``tests/test_layering.py``); the console reaches shovels, federation links and
connectors only through the runtime-parameter registry.
"""
