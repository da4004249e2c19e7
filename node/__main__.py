"""``python -m edgeswarm.node``: the same as the ``edgeswarm`` command."""

from .cli import main

main()
