"""AMQP 1.0 front end: codec.py (sans-I/O types and frames), connection.py (Twisted)."""
