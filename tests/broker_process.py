"""The tests' broker subprocess: warren's own ``warren.embedded.process``, which the embedded
broker shares, re-exported under the name the tests have always imported."""

from warren.embedded.process import READY_MARK, BrokerProcess, free_port

__all__ = ["READY_MARK", "BrokerProcess", "free_port"]
