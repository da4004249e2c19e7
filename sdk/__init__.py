"""edgeswarm's Python API: talk to a running node, or run one inside an asyncio program.

- ``Client``: a blocking client of a daemon's control socket, with typed replies.
- ``AsyncClient``: the same, awaited, on asyncio or trio.
- ``EmbeddedNode``: a node in this process, run by the asyncio loop (trio guest mode).
- ``requests`` and ``replies``: every control command and the struct it answers with.

The layers themselves are ``edgeswarm.node``, ``edgeswarm.protocols``, ``edgeswarm.learning``
and ``edgeswarm.sim``; this package only gathers what an application needs.
"""

from edgeswarm.node.control import replies, requests
from edgeswarm.node.control.client import AsyncClient, Client, ControlError
from edgeswarm.node.embedded import EmbeddedNode, NodeStopped

__all__ = ["AsyncClient", "Client", "ControlError", "EmbeddedNode", "NodeStopped", "replies", "requests"]
