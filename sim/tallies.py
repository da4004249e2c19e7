"""A node's counters summed over its sessions: what the simulator's hosts and daemon processes
keep so a restart does not lose what the node counted before it."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping

from edgeswarm.node.node import NodeStatus


class Tallies:
    """A node's counters summed over its sessions (a restarted node counts from zero again)."""

    def __init__(self) -> None:
        self._past: dict[str, Tally[str]] = {}

    def end_session(self, last: NodeStatus) -> None:
        """Keep what a session counted up to ``last``, its final status."""
        add_counters(self._past, _counted(last))

    def total(self, current: NodeStatus | None) -> dict[str, Tally[str]]:
        """Every past session plus ``current`` (the running session's status, if any)."""
        totals = {name: Tally(labels) for name, labels in self._past.items()}
        if current is not None:
            add_counters(totals, _counted(current))
        return totals


def add_counters(totals: dict[str, Tally[str]], counters: Mapping[str, Mapping[str, int]]) -> None:
    for name, labels in counters.items():
        totals.setdefault(name, Tally()).update(labels)


def _counted(status: NodeStatus) -> dict[str, Mapping[str, int]]:
    return {**status.counters, "transport": status.transport}
