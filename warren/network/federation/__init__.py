"""RabbitMQ federation: federated exchanges and queues pulling from upstream brokers.

:mod:`.definition` validates the ``federation-upstream`` and ``federation-upstream-set``
runtime parameters; :mod:`.component` turns parameters and policies into links;
:mod:`.exchange_link` and :mod:`.queue_link` are the links; :mod:`.status` what
``/api/federation-links`` shows of them.
"""
