"""The result of a Deferred a test expects to have fired already (a core call on a fake clock
and an in-memory store answers at once)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred


def fired(done: Deferred) -> Any:
    """What ``done`` fired with; fails the test if it has not fired or failed."""
    results: list[Any] = []
    done.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if hasattr(result, "raiseException"):   # a Failure: raise what it holds
        result.raiseException()
    return result
