"""``python -m octopipe.providers.emulator``: see ``cli.main``."""

import sys

from octopipe.providers.emulator.cli import main

sys.exit(main())
