"""Device profiles: what a node's hardware can afford, declared in ``configs/devices``.

The simulator uses a profile to model a node's link speed and (later) how long CPU-bound
work takes; services use the budgets to choose what to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from edgeswarm.node.config import Section, load_toml


class DeviceProfile(Section, frozen=True):
    """A device's resources and budgets.

    Parameters
    ----------
    name : str
    cores : int
    memory_mb : int
    compute_speed : float
        Relative to a reference laptop core (1.0); modelled CPU time scales by 1/speed.
    latency_budget_ms : float
        Largest per-inference latency the device accepts for its vision model (the OFA
        subnet it selects, one 16x16 image).
    energy_budget_j : float
        Energy the device may spend per training round.
    uplink_mbps, downlink_mbps : float
        Link capacity, megabits per second.
    threads : int (default: 1)
        Threads inference may use.
    """

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    cores: Annotated[int, msgspec.Meta(ge=1, le=1024)]
    memory_mb: Annotated[int, msgspec.Meta(ge=16)]
    compute_speed: Annotated[float, msgspec.Meta(gt=0)]
    latency_budget_ms: Annotated[float, msgspec.Meta(gt=0)]
    energy_budget_j: Annotated[float, msgspec.Meta(gt=0)]
    uplink_mbps: Annotated[float, msgspec.Meta(gt=0)]
    downlink_mbps: Annotated[float, msgspec.Meta(gt=0)]
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1

    @property
    def uplink_bytes_per_s(self) -> float:
        return self.uplink_mbps * 1e6 / 8


def load_device(path: Path) -> DeviceProfile:
    return load_toml(path, DeviceProfile)


REFERENCE_MICROBENCHMARK_MS = 2.63  # learning.cost.microbenchmark_ms(1) on the development machine (the reference core)


def measure_device(latency_budget_ms: float, threads: int = 1) -> DeviceProfile:
    """This machine's profile, measured: cores and memory (psutil) and compute speed from an
    onnxruntime micro-benchmark against the reference laptop core. Needs the learn extra."""
    import os

    import psutil

    from edgeswarm.learning.cost import microbenchmark_ms

    speed = REFERENCE_MICROBENCHMARK_MS / microbenchmark_ms(threads)
    return DeviceProfile(
        name="measured",
        cores=os.cpu_count() or 1,
        memory_mb=int(psutil.virtual_memory().total / 2**20),
        compute_speed=round(speed, 3),
        latency_budget_ms=latency_budget_ms,
        energy_budget_j=1000.0,
        uplink_mbps=10.0,
        downlink_mbps=10.0,
        threads=threads,
    )
