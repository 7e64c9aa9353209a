"""The vocabulary every layer speaks: messages and the errors meant for clients.

It sits below the core so that the exchange types (which route a ``Message`` and refuse a bad
binding with ``PreconditionFailed``) and the broker (which stores and delivers messages) share
it without importing each other; the front ends, the console and the network bridges speak it
too. It imports nothing of warren but ``reply_error``.
"""
