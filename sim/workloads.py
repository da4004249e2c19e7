"""Every workload a scenario can run, by its scenario table name (see ``sim.workload``).

Adding a workload is one file defining a ``Workload`` subclass as ``WORKLOAD``, and one line
naming that file here.
"""

from __future__ import annotations

from importlib import import_module

from .workload import Workload

MODULES = (
    "grank_workload",
    "replay_workload",
    "fl_workload",
    "lora_workload",
    "semspace_workload",
)

WORKLOADS: dict[str, type[Workload]] = {
    kind.name: kind for kind in (import_module(f"{__package__}.{module}").WORKLOAD for module in MODULES)
}
