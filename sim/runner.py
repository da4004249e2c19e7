"""Run a scenario: build the devices, drive time, churn and partitions, observe, report.

``run_scenario`` is the whole simulation in one call; it runs trio under a ``MockClock`` so
virtual seconds cost only the CPU the nodes really use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import trio
import trio.testing

from edgeswarm.node.identity import Identity
from edgeswarm.node.store import Store
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.protocols.peer_id import PeerId

from .churn import Action, churn_schedule
from .determinism import VIRTUAL_EPOCH, derive_bytes, derive_rng, seed_trio_scheduler
from .host import SimHost
from .nat_model import NatModel
from .observe import SwarmObserver, build_report, observe, total_counters
from .scenario import LoadedScenario, Scenario
from .sybils import SybilAttack, modelled_addresses
from .virtual_network import LinkModel, VirtualNetwork
from .workload import Workload

Progress = Callable[[float], None]


def run_scenario(loaded: LoadedScenario, *, out_dir: Path | None, progress: Progress | None = None) -> dict[str, Any]:
    """Simulate ``loaded`` and return its report (see ``Simulation.report``)."""
    seed_trio_scheduler(loaded.scenario.seed)
    wall_start = time.perf_counter()
    sim = Simulation(loaded, out_dir=out_dir, progress=progress)
    trio.run(sim.run, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim.report(wall_seconds=time.perf_counter() - wall_start)


def nat_model(spec: Scenario, peers: list[PeerId]) -> NatModel | None:
    """Who is behind a NAT in this run (drawn from the seed, never a bootstrap node), or None."""
    net = spec.network
    if net.private_share <= 0:
        return None
    candidates = peers[spec.bootstrap :]
    private = set(derive_rng(spec.seed, "nat").sample(candidates, round(net.private_share * len(candidates))))
    return NatModel(
        private=private,
        public=[p for p in peers if p not in private],
        rng=derive_rng(spec.seed, "nat-model"),
        hole_punch=net.hole_punch_success if net.nat == "endpoint-independent" else 0.0,
        circuit_bytes=net.relay_circuit_kb * 1024,
        relays_per_node=net.relays_per_node,
    )


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
        sybils = self.sybil_count = spec.sybils.count(spec.nodes, spec.bootstrap)
        addrs = modelled_addresses(spec.sybils, spec.seed, spec.nodes, sybils) if sybils else [()] * spec.nodes
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
                addrs=addrs[i],
            )
            for i, identity in enumerate(identities)
        ]
        self.network.nat = nat_model(spec, [h.identity.peer_id for h in self.hosts])
        self.sybils = SybilAttack(spec.sybils, spec.seed, self.hosts, sybils) if sybils else None
        self.observer = SwarmObserver()
        self.experiment: Workload | None = None
        if spec.workload is not None:
            kind, workload = spec.workload
            self.experiment = kind(workload, spec.seed, self.hosts[: spec.nodes - sybils])  # Sybils are no users
        self.crashes = 0
        self._final_counters: dict[str, Any] = {}

    def _node_config(self, index: int, device):
        """The scenario's node config; the workload gives node i its share of the data, and
        Sybils withhold: they serve no click rows."""
        if index >= self.spec.nodes - self.sybil_count:
            return msgspec.structs.replace(
                self.spec.node, ranking=msgspec.structs.replace(self.spec.node.ranking, enabled=False)
            )
        if self.spec.workload is None:
            return self.spec.node
        kind, workload = self.spec.workload
        return kind.node_config(workload, self.spec.node, index, self.spec.nodes - self.sybil_count, device)

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
            for index, events in churn_schedule(spec).items():
                nursery.start_soon(self._churn, self.hosts[index], events, nursery)
            for index, partition in enumerate(spec.partitions):
                nursery.start_soon(self._partition, index, partition)
            nursery.start_soon(self._observe)
            if self.sybils is not None:
                nursery.start_soon(self.sybils.run)
            if self.experiment is not None:
                await trio.sleep(spec.join_window)
                nursery.start_soon(self.experiment.run, nursery)
                with trio.move_on_after(spec.duration - spec.join_window):
                    await self.experiment.done.wait()
            else:
                await trio.sleep(spec.duration)
            self._sample()
            self._ended_at = trio.current_time()
            self._final_counters = total_counters(self.hosts)
            self._experiment_report = self.experiment.report() if self.experiment is not None else None
            nursery.cancel_scope.cancel()
        for host in self.hosts:
            host.store.close()

    async def _join(self, host: SimHost, delay: float, nursery: trio.Nursery) -> None:
        await trio.sleep(delay)
        await host.start(nursery)

    async def _churn(self, host: SimHost, events: list[tuple[float, Action]], nursery: trio.Nursery) -> None:
        await trio.sleep_until(self.spec.churn.start)
        for at, action in events:
            await trio.sleep_until(at)
            if action == "crash" and host.online:
                host.crash()
                self.crashes += 1
            elif action == "start" and not host.online:
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
        observe(self.observer, trio.current_time(), self.hosts)
        if self.sybils is not None:
            self.sybils.sample(trio.current_time())
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
        if self.network.nat is not None:
            report["metrics"]["nat"] = self.network.nat.report()
        if self.sybils is not None:
            report["metrics"].update(self.sybils.report())
            report["sybil_series"] = self.sybils.series
        if self.experiment is not None and self._experiment_report is not None:
            report["metrics"].update(self._experiment_report["final"])
            report[f"{self.experiment.name}_series"] = self._experiment_report["series"]
        return report
