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
from .observe import SwarmObserver, add_counters, build_report
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
        chosen_devices = [loaded.devices[device_rng.choices(names, weights)[0]] for _ in identities]
        self.hosts = [
            SimHost(
                index=i,
                seed=spec.seed,
                identity=identity,
                store=self._open_store(out_dir, i),
                device=chosen_devices[i],
                config=self._node_config(i, chosen_devices[i]),
                network=self.network,
                clock=lambda: VIRTUAL_EPOCH + trio.current_time(),
                bootstrap=bootstrap,
            )
            for i, identity in enumerate(identities)
        ]
        self.observer = SwarmObserver()
        self.experiment = None
        if spec.grank is not None:
            from .grank_workload import GRankExperiment

            self.experiment = GRankExperiment(spec.grank, spec.seed, self.hosts)
        if spec.fl is not None:
            from .fl_workload import FlExperiment

            self.experiment = FlExperiment(spec.fl, spec.seed, self.hosts)
        if spec.lora is not None:
            from .lora_workload import LoraExperiment

            self.experiment = LoraExperiment(spec.lora, spec.seed, self.hosts)
        if spec.semspace is not None:
            from .semspace_workload import SemSpaceExperiment

            self.experiment = SemSpaceExperiment(spec.semspace, spec.seed, self.hosts)
        self.crashes = 0
        self._final_counters: dict[str, Tally[str]] = {}

    def _node_config(self, index: int, device):
        """The scenario's node config; workloads give node i its share of their data."""
        fl, lora = self.spec.fl, self.spec.lora
        if self.spec.semspace is not None:
            from .semspace_workload import node_config as semspace_config

            return semspace_config(self.spec.node, self.spec.semspace, index)
        if lora is not None:
            from .lora_workload import node_config

            return node_config(self.spec.node, lora, index, self.spec.nodes)
        if fl is None or index > fl.clients:
            return self.spec.node
        from .fl_workload import node_config

        return node_config(self.spec.node, fl, index, device)

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
                delay = join_rng.uniform(0, spec.join_window)
                if self.experiment is None or not self.experiment.starts_late(host):
                    nursery.start_soon(self._join, host, delay, nursery)
            churning = self._churning()
            for host in churning:
                nursery.start_soon(self._churn, host, nursery)
            for index, partition in enumerate(spec.partitions):
                nursery.start_soon(self._partition, index, partition)
            nursery.start_soon(self._observe)
            if self.experiment is not None:
                await trio.sleep(spec.join_window)
                nursery.start_soon(self.experiment.run, nursery)
                with trio.move_on_after(spec.duration - spec.join_window):
                    await self.experiment.done.wait()
            else:
                await trio.sleep(spec.duration)
            self._sample()
            self._ended_at = trio.current_time()
            self._final_counters = _sum_counters(self.hosts)
            self._experiment_report = self.experiment.report() if self.experiment is not None else None
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
        membership: Tally[str] = Tally()
        for host in self.hosts:
            membership.update(host.counters().get("membership", {}))
        self.observer.sample(
            trio.current_time(), {s.peer_id: s.view for s in statuses}, (s.heard_from for s in statuses), membership
        )
        if self._progress is not None:
            self._progress(trio.current_time())

    def report(self, *, wall_seconds: float) -> dict[str, Any]:
        report = build_report(
            self.spec,
            wall_seconds=wall_seconds,
            devices=(h.device.name for h in self.hosts),
            counters=self._final_counters,
            network={"bytes_sent": self.network.bytes_sent, "messages_lost": self.network.messages_lost},
            churn={"crashes": self.crashes, "sessions": sum(h.sessions for h in self.hosts)},
            observer=self.observer,
            virtual_seconds=self._ended_at,
        )
        if self._experiment_report is not None:
            result = self._experiment_report
            report["metrics"].update(result["final"])
            name = ("fl" if self.spec.fl else "lora" if self.spec.lora else "semspace" if self.spec.semspace
                    else "grank")
            report[f"{name}_series"] = result["series"]
        return report


def _sum_counters(hosts: list[SimHost]) -> dict[str, Tally[str]]:
    totals: dict[str, Tally[str]] = {}
    for host in hosts:
        add_counters(totals, host.counters())
    return totals
