"""What a run observes of the swarm over time, and the report both runners write.

Fed only with what nodes report through their status (view, peers heard on gossip,
counters), whichever transport they run on: a ``Member`` is a simulated host or a daemon
process, each with its counters summed over its sessions (``sim.tallies``).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from edgeswarm.node.node import NodeStatus

from .overlay import overlay_stats
from .tallies import Tallies, add_counters

if TYPE_CHECKING:
    from .scenario import Scenario

SERIES = (
    "online",
    "coverage",
    "live_entry_fraction",
    "strongly_connected",
    "largest_component",
    "gossip_coverage",
    "shuffle_success",
)


class Member(Protocol):
    """One node of a run, as the observer sees it."""

    tallies: Tallies

    def status(self) -> NodeStatus | None:
        """The running node's status, or None while it is down (or not answering)."""
        ...


def observe(observer: SwarmObserver, t: float, members: Sequence[Member]) -> None:
    """Sample every member's status into ``observer`` at time ``t``."""
    current = [member.status() for member in members]
    statuses = [s for s in current if s is not None]
    membership: Tally[str] = Tally()
    for member, status in zip(members, current):
        membership.update(member.tallies.total(status).get("membership", {}))
    observer.sample(t, {s.peer_id: s.view for s in statuses}, (s.heard_from for s in statuses), membership)


def total_counters(members: Iterable[Member]) -> dict[str, Tally[str]]:
    """Counters summed over every member and session (the report's ``metrics.counters``)."""
    totals: dict[str, Tally[str]] = {}
    for member in members:
        add_counters(totals, member.tallies.total(member.status()))
    return totals


class SwarmObserver:
    """Samples of the swarm's health, one per ``sample`` call."""

    def __init__(self) -> None:
        self.timeseries: dict[str, list[Any]] = {"t": [], **{key: [] for key in SERIES}}
        self.final: dict[str, Any] = {}
        self._shuffles = (0, 0)

    def sample(
        self,
        t: float,
        views: Mapping[str, list[str]],
        heard_from: Iterable[int],
        membership_counters: Mapping[str, int],
    ) -> None:
        """Record one observation at time ``t``.

        ``views`` maps each live node to its view; ``heard_from`` is, per live node, how
        many peers it heard on gossip; ``membership_counters`` are swarm totals so far.
        """
        if self.timeseries["t"] and self.timeseries["t"][-1] == t:
            return
        stats = overlay_stats(views)
        others = len(views) - 1
        heard = list(heard_from)
        stats["gossip_coverage"] = (
            round(sum(min(h, others) for h in heard) / (len(heard) * others), 6) if others > 0 and heard else None
        )
        ok, failed = membership_counters.get("shuffle_ok", 0), membership_counters.get("shuffle_failed", 0)
        new_ok, new_failed = ok - self._shuffles[0], failed - self._shuffles[1]
        self._shuffles = (ok, failed)
        stats["shuffle_success"] = round(new_ok / (new_ok + new_failed), 6) if new_ok + new_failed else None
        ts = self.timeseries
        ts["t"].append(round(t, 6))
        ts["online"].append(len(views))
        for key in SERIES[1:]:
            ts[key].append(stats.get(key))
        self.final = {k: v for k, v in stats.items() if k != "shuffle_success"}


def build_report(
    spec: Scenario,
    *,
    wall_seconds: float,
    devices: Iterable[str],
    counters: Mapping[str, Tally[str]],
    network: Mapping[str, int],
    churn: Mapping[str, int],
    observer: SwarmObserver,
    virtual_seconds: float | None = None,
) -> dict[str, Any]:
    """The run as JSON-ready data; only ``wall_*`` fields vary between equal-seed virtual runs.

    ``virtual_seconds`` is how long the run lasted (a workload may end before ``duration``).
    """
    elapsed = spec.duration if virtual_seconds is None else virtual_seconds
    return {
        "scenario": spec.name,
        "transport": spec.transport,
        "seed": spec.seed,
        "nodes": spec.nodes,
        "virtual_seconds": round(elapsed, 3),
        "wall_seconds": round(wall_seconds, 3),
        "wall_virtual_per_wall_second": round(elapsed / wall_seconds, 2) if wall_seconds else None,
        "devices": dict(sorted(Tally(devices).items())),
        "events": {
            "churn": (
                {"fraction": spec.churn.fraction, "start": spec.churn.start, "end": spec.churn.end}
                if spec.churn.fraction > 0
                else None
            ),
            "partitions": [{"start": p.start, "end": p.end, "groups": p.groups} for p in spec.partitions],
        },
        "metrics": {
            "counters": {name: dict(sorted(t.items())) for name, t in sorted(counters.items())},
            "network": dict(network),
            "membership": observer.final,
            "churn": dict(churn),
        },
        "timeseries": observer.timeseries,
    }
