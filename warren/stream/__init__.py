"""Stream queues (``x-queue-type: stream``): an append-only log that consumers read by offset.

``log.py`` keeps the records on disk in segment files, ``offsets.py`` turns an
``x-stream-offset`` into a place in the log, ``queue.py`` is the queue type the vhost makes for
a stream. Like the core it imports no front end: every protocol reads a stream through the
``Consumer`` interface.
"""
