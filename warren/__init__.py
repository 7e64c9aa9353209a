"""warren: a message broker in the RabbitMQ / ActiveMQ tradition."""

__version__ = "0.1.0"
