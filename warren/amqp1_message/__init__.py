"""The AMQP 1.0 message format, shared by what speaks it: the type codec (``codec.py``) and
the bare message <-> core message mapping (``mapping.py``). The AMQP 1.0 front end uses both;
so do stream queues, since RabbitMQ's Stream protocol carries AMQP 1.0 messages. A package
of its own below the front ends, so none of them imports another to get it."""
