"""Where CPU-bound work runs: a worker thread on a real node, modelled time in the simulator.

Services hand torch work to ``Compute.run`` instead of calling it inline, so a daemon keeps
answering peers while it trains, and a simulated phone takes longer than a laptop in
virtual time (its duration comes from the device profile, not from this machine's speed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

T = TypeVar("T")


class Compute(Protocol):
    async def run(self, fn: Callable[[], T], *, reference_seconds: float) -> T:
        """Run ``fn``; ``reference_seconds`` is its cost on a reference laptop core."""
        ...


class ThreadCompute:
    """Real work in a worker thread (one at a time: torch already uses every core)."""

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[[], T], *, reference_seconds: float) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)


class ModelledCompute:
    """Simulator: run ``fn`` inline (virtual time stands still), then let the modelled
    duration pass: ``reference_seconds / compute_speed`` of the node's device profile."""

    def __init__(self, compute_speed: float) -> None:
        if compute_speed <= 0:
            raise ValueError("compute_speed must be positive")
        self.compute_speed = compute_speed
        self._busy = trio.Lock()

    async def run(self, fn: Callable[[], T], *, reference_seconds: float) -> T:
        async with self._busy:  # a device trains one thing at a time
            result = fn()
            await trio.sleep(max(0.0, reference_seconds) / self.compute_speed)
        return result
