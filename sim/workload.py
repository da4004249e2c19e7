"""What a scenario runs over the swarm: the ``Workload`` every experiment follows.

A workload is one file in ``sim/``: its scenario table (a ``Section``, e.g. ``[grank]``) and
a ``Workload`` subclass naming it, exported as ``WORKLOAD``. ``sim.workloads`` lists the
files; the scenario loader, the runner, ``report.json``, the plots and the summary table
learn every workload from there, so adding one is one new file plus one line in that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import trio

from edgeswarm.node.config import NodeConfig, Section
from edgeswarm.node.subnet.device import DeviceProfile

from .host import SimHost


class Workload:
    """One experiment over the simulation's hosts.

    Subclasses set ``name`` (the scenario table and the report's ``<name>_series``) and
    ``Spec`` (that table's type), and implement ``run`` and ``report``; the rest has
    defaults. Users act only through each node's public API, as a person at the CLI would.
    Workloads run on the virtual network only: a libp2p scenario that names one is refused.

    Parameters
    ----------
    spec : Spec
        The scenario's table for this workload.
    seed : int
        The scenario's seed; draw randomness with ``sim.determinism.derive_rng``.
    hosts : sequence of SimHost
        Every device of the run, node 0 first.
    """

    name: ClassVar[str]
    Spec: ClassVar[type[Section]]

    def __init__(self, spec: Any, seed: int, hosts: Sequence[SimHost]) -> None:
        self.spec = spec
        self.seed = seed
        self.hosts = list(hosts)
        self.done = trio.Event()
        """Set when the workload has finished; the run ends then (or at ``duration``)."""

    @classmethod
    def resolve_paths(cls, spec: Any, folder: Path) -> Any:
        """``spec`` with its file paths made absolute against ``folder``, the scenario file's."""
        return spec

    @classmethod
    def check(cls, spec: Any, nodes: int) -> str | None:
        """Why a scenario of ``nodes`` nodes cannot run ``spec`` (a config error), or None."""
        return None

    @classmethod
    def node_config(cls, spec: Any, base: NodeConfig, index: int, nodes: int, device: DeviceProfile) -> NodeConfig:
        """Node ``index``'s config: the scenario's, with this workload's share of the data."""
        return base

    def starts_late(self, host: SimHost) -> bool:
        """Hosts the workload brings online itself (the runner does not start them)."""
        return False

    async def run(self, nursery: trio.Nursery) -> None:
        """Drive the experiment; ``nursery`` is the simulation's (to start hosts in)."""
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        """``{"final": metrics for report["metrics"], "series": report["<name>_series"]}``."""
        raise NotImplementedError

    @staticmethod
    def plot(report: dict[str, Any], path: Path) -> Path | None:
        """Write this workload's PNG to ``path`` (matplotlib is installed); None: no plot."""
        return None

    @staticmethod
    def summary(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        """Headline rows for the summary table, from ``report["metrics"]``."""
        return []
