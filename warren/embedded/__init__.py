"""warren embedded in a Python program or test suite: ``from warren.embedded import Broker``.

``Broker`` (broker.py) is the user's entry; ``process.BrokerProcess`` and ``ports.free_port``
are what it is built on, shared with warren's own tests. ``warren.pytest_plugin`` turns it
into pytest fixtures.
"""

from .broker import Broker

__all__ = ["Broker"]
