import sys

from bench.loadgen.cli import main

sys.exit(main())
