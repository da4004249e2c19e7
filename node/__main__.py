"""``python -m edgeswarm.node``: the same as the ``edgeswarm`` command."""

from edgeswarm.node.cli import main

main()
