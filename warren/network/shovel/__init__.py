"""Dynamic shovels, as RabbitMQ's shovel plugin defines them (runtime parameter ``shovel``).

- :mod:`.definition`: the JSON keys, RabbitMQ's validation texts and defaults;
- :mod:`.endpoint`: the Source/Destination interface a worker moves messages between;
- :mod:`.local` (this broker, through the core) and :mod:`.remote` (another broker, a Link);
- :mod:`.worker`: one running shovel: ack modes, delete-after, headers, restarts, status;
- :mod:`.component`: the runtime-parameter component that validates and runs them.
"""
