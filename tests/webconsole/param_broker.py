"""``python -m tests.webconsole.param_broker run ...``: ``warren run`` with the test-only
runtime-parameter component ``test`` registered (see ``tests/parameter_component.py``), through
the same ``PARAMETER_COMPONENTS`` hook shovels and federation use."""

import sys

from tests.parameter_component import Recorder
from warren import cli, server

server.PARAMETER_COMPONENTS += (lambda broker, config: Recorder(),)
sys.exit(cli.main())
