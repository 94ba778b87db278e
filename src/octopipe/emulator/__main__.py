"""``python -m octopipe.emulator``: see ``cli.main``."""

import sys

from octopipe.emulator.cli import main

sys.exit(main())
