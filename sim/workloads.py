"""Every workload a scenario can run, by its scenario table name (see ``sim.workload``)."""

from __future__ import annotations

from .fl_workload import FlExperiment
from .grank_workload import GRankExperiment
from .lora_workload import LoraExperiment
from .replay_workload import ReplayExperiment
from .semspace_workload import SemSpaceExperiment
from .workload import Workload

WORKLOADS: dict[str, type[Workload]] = {
    kind.name: kind
    for kind in (
        GRankExperiment,
        ReplayExperiment,
        FlExperiment,
        LoraExperiment,
        SemSpaceExperiment,
    )
}
