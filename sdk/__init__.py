"""edgeswarm's Python API: talk to a running node, or run one inside an asyncio program.

- ``Client``: a blocking client of a daemon's control socket, with typed replies.
- ``AsyncClient``: the same, awaited, on asyncio or trio.
- ``EmbeddedNode``: a node in this process, run by the asyncio loop (trio guest mode).
- ``requests`` and ``replies``: every control command and the struct it answers with.

The layers themselves are ``edgeswarm.node``, ``edgeswarm.protocols``, ``edgeswarm.learning``
and ``edgeswarm.sim``. Each name here loads on first use, so importing one layer (which
imports this package first) loads nothing of the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeswarm.node.control import replies, requests
    from edgeswarm.node.control.client import AsyncClient, Client, ControlError
    from edgeswarm.node.embedded import EmbeddedNode, NodeStopped

_WHERE = {
    "AsyncClient": "edgeswarm.node.control.client",
    "Client": "edgeswarm.node.control.client",
    "ControlError": "edgeswarm.node.control.client",
    "EmbeddedNode": "edgeswarm.node.embedded",
    "NodeStopped": "edgeswarm.node.embedded",
}
_MODULES = {"replies": "edgeswarm.node.control.replies", "requests": "edgeswarm.node.control.requests"}

__all__ = ["AsyncClient", "Client", "ControlError", "EmbeddedNode", "NodeStopped", "replies", "requests"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'edgeswarm' has no attribute {name!r}")
