"""bench's own load generator: AMQP 0-9-1, STOMP 1.2 and MQTT 3.1.1 clients on raw asyncio
sockets, closed or open loop, exact latency percentiles and loss/duplicate counts, one JSON
line per run (``python -m bench.loadgen --help``; see bench/README.md)."""
