"""Run a scenario: build the devices, drive time, churn and partitions, observe, report.

``run_scenario`` is the whole simulation in one call; it runs trio under a ``MockClock`` so
virtual seconds cost only the CPU the nodes really use.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from edgeswarm.node.identity import Identity
from edgeswarm.node.store import Store
from edgeswarm.protocols.membership.messages import Descriptor

from .determinism import VIRTUAL_EPOCH, derive_bytes, derive_rng, seed_trio_scheduler
from .host import SimHost
from .overlay import overlay_stats
from .scenario import LoadedScenario, Scenario
from .virtual_network import LinkModel, VirtualNetwork

Progress = Callable[[float], None]


def run_scenario(loaded: LoadedScenario, *, out_dir: Path | None, progress: Progress | None = None) -> dict[str, Any]:
    """Simulate ``loaded`` and return its report (see ``Simulation.report``)."""
    seed_trio_scheduler(loaded.scenario.seed)
    wall_start = time.perf_counter()
    sim = Simulation(loaded, out_dir=out_dir, progress=progress)
    trio.run(sim.run, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim.report(wall_seconds=time.perf_counter() - wall_start)


class Simulation:
    """The state of one run; ``run`` is its trio entry point."""

    def __init__(self, loaded: LoadedScenario, *, out_dir: Path | None, progress: Progress | None) -> None:
        self.spec: Scenario = loaded.scenario
        spec = self.spec
        self._progress = progress
        link = LinkModel(
            latency_median=spec.network.latency_ms / 1000,
            latency_sigma=spec.network.latency_sigma,
            loss=spec.network.loss,
            gossip_degree=spec.network.gossip_degree,
        )
        self.network = VirtualNetwork(derive_rng(spec.seed, "network"), link)
        identities = [Identity.from_seed(derive_bytes(spec.seed, "identity", i)) for i in range(spec.nodes)]
        bootstrap = [Descriptor(identities[i].peer_id) for i in range(spec.bootstrap)]
        names = list(spec.devices)
        weights = [spec.devices[n] for n in names]
        device_rng = derive_rng(spec.seed, "devices")
        self.hosts = [
            SimHost(
                index=i,
                seed=spec.seed,
                identity=identity,
                store=self._open_store(out_dir, i),
                device=loaded.devices[device_rng.choices(names, weights)[0]],
                config=spec.node,
                network=self.network,
                clock=lambda: VIRTUAL_EPOCH + trio.current_time(),
                bootstrap=bootstrap,
            )
            for i, identity in enumerate(identities)
        ]
        self.timeseries: dict[str, list[Any]] = {
            "t": [], "online": [], "coverage": [], "live_entry_fraction": [],
            "strongly_connected": [], "largest_component": [], "shuffle_success": [], "gossip_coverage": [],
        }
        self._shuffles_seen = (0, 0)
        self.crashes = 0
        self.final_overlay: dict[str, Any] = {}
        self._final_counters: dict[str, Tally[str]] = {}

    def _open_store(self, out_dir: Path | None, index: int) -> Store:
        if self.spec.store == "files":
            if out_dir is None:
                raise ValueError("store = 'files' needs an output directory")
            return Store.open(out_dir / "nodes" / f"{index:05d}.sqlite")
        return Store.open(":memory:")

    async def run(self) -> None:
        spec = self.spec
        async with trio.open_nursery() as nursery:
            await nursery.start(self.network.run)
            for host in self.hosts[: spec.bootstrap]:
                await host.start(nursery)
            join_rng = derive_rng(spec.seed, "join")
            for host in self.hosts[spec.bootstrap :]:
                nursery.start_soon(self._join, host, join_rng.uniform(0, spec.join_window), nursery)
            churning = self._churning()
            for host in churning:
                nursery.start_soon(self._churn, host, nursery)
            for index, partition in enumerate(spec.partitions):
                nursery.start_soon(self._partition, index, partition)
            nursery.start_soon(self._observe)
            await trio.sleep(spec.duration)
            self._sample()
            self._final_counters = _sum_counters(self.hosts)
            nursery.cancel_scope.cancel()
        for host in self.hosts:
            host.store.close()

    async def _join(self, host: SimHost, delay: float, nursery: trio.Nursery) -> None:
        await trio.sleep(delay)
        await host.start(nursery)

    def _churning(self) -> list[SimHost]:
        spec = self.spec
        candidates = self.hosts[spec.bootstrap :]
        count = round(spec.churn.fraction * len(candidates))
        return derive_rng(spec.seed, "churn").sample(candidates, count) if count else []

    async def _churn(self, host: SimHost, nursery: trio.Nursery) -> None:
        churn = self.spec.churn
        rng = derive_rng(self.spec.seed, "churn", host.index)
        await trio.sleep_until(churn.start)
        while True:
            await trio.sleep(rng.expovariate(1 / churn.mean_up))
            if trio.current_time() >= churn.end:
                break
            if host.online:
                host.crash()
                self.crashes += 1
            down = rng.expovariate(1 / churn.mean_down)
            await trio.sleep_until(min(trio.current_time() + down, churn.end))
            if not host.online:
                await host.start(nursery)
        if not host.online:
            await host.start(nursery)

    async def _partition(self, index: int, partition: Any) -> None:
        rng = derive_rng(self.spec.seed, "partition", index)
        await trio.sleep_until(partition.start)
        self.network.partition({h.identity.peer_id: rng.randrange(partition.groups) for h in self.hosts})
        await trio.sleep_until(partition.end)
        self.network.heal()

    async def _observe(self) -> None:
        while True:
            await trio.sleep(self.spec.sample_interval)
            self._sample()

    def _sample(self) -> None:
        statuses = [s for h in self.hosts if (s := h.status()) is not None]
        views = {s.peer_id: s.view for s in statuses}
        stats = overlay_stats(views)
        others = len(statuses) - 1
        stats["gossip_coverage"] = (
            round(sum(min(s.heard_from, others) for s in statuses) / (len(statuses) * others), 6) if others > 0 else None
        )
        now = trio.current_time()
        if self.timeseries["t"] and self.timeseries["t"][-1] == now:
            return
        ts = self.timeseries
        ts["t"].append(now)
        ts["online"].append(len(views))
        for key in ("coverage", "live_entry_fraction", "strongly_connected", "largest_component", "gossip_coverage"):
            ts[key].append(stats.get(key, 0))
        ok = failed = 0
        for host in self.hosts:
            membership = host.counters().get("membership", {})
            ok += membership.get("shuffle_ok", 0)
            failed += membership.get("shuffle_failed", 0)
        new_ok, new_failed = ok - self._shuffles_seen[0], failed - self._shuffles_seen[1]
        self._shuffles_seen = (ok, failed)
        ts["shuffle_success"].append(round(new_ok / (new_ok + new_failed), 6) if new_ok + new_failed else None)
        self.final_overlay = stats
        if self._progress is not None:
            self._progress(now)

    def report(self, *, wall_seconds: float) -> dict[str, Any]:
        """The run as JSON-ready data; only ``wall_*`` fields vary between equal-seed runs."""
        spec = self.spec
        totals = self._final_counters
        return {
            "scenario": spec.name,
            "seed": spec.seed,
            "nodes": spec.nodes,
            "virtual_seconds": spec.duration,
            "wall_seconds": round(wall_seconds, 3),
            "wall_virtual_per_wall_second": round(spec.duration / wall_seconds, 2) if wall_seconds else None,
            "devices": dict(sorted(Tally(h.device.name for h in self.hosts).items())),
            "events": {
                "churn": (
                    {"fraction": spec.churn.fraction, "start": spec.churn.start, "end": spec.churn.end}
                    if spec.churn.fraction > 0 else None
                ),
                "partitions": [{"start": p.start, "end": p.end, "groups": p.groups} for p in spec.partitions],
            },
            "metrics": {
                "counters": {name: dict(sorted(t.items())) for name, t in sorted(totals.items())},
                "network": {"bytes_sent": self.network.bytes_sent, "messages_lost": self.network.messages_lost},
                "membership": self.final_overlay,
                "churn": {"crashes": self.crashes, "sessions": sum(h.sessions for h in self.hosts)},
            },
            "timeseries": self.timeseries,
        }


def _sum_counters(hosts: list[SimHost]) -> dict[str, Tally[str]]:
    totals: dict[str, Tally[str]] = {}
    for host in hosts:
        for name, labels in host.counters().items():
            totals.setdefault(name, Tally()).update(labels)
    return totals
