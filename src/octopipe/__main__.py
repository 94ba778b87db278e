"""``python -m octopipe`` is the ``octopipe`` command."""

from octopipe.cli import main

main()
