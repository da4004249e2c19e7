"""Run a scenario on real libp2p: one ``edgeswarm node run`` process per node on 127.0.0.1.

The same workload and the same ``report.json`` as the virtual network, but in wall-clock
time over real Noise/yamux/GossipSub connections. Churn is ``kill -9`` and a restart from
the node's data dir. Every process started is stopped when the run ends, also on errors
and Ctrl-C (``DaemonGroup``).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import msgspec
import tomli_w

from edgeswarm.node.control import ControlError

from .determinism import derive_rng
from .observe import SwarmObserver, add_counters, build_report
from .processes import Daemon, DaemonGroup
from .runner import Progress
from .scenario import LoadedScenario, Scenario


def run_libp2p_scenario(loaded: LoadedScenario, *, out_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    spec = loaded.scenario
    config_path = out_dir / "node.toml"
    node_config = msgspec.to_builtins(spec.node)
    # every daemon listens on 127.0.0.1: GossipSub's IP-diversity rule would starve the mesh
    node_config["network"]["eclipse_protection"] = False
    config_path.write_bytes(tomli_w.dumps(node_config).encode())
    wall_start = time.perf_counter()
    run = _Run(spec)
    with DaemonGroup(out_dir / "nodes", extra_args=["--config", str(config_path)]) as group:
        run.execute(group, progress)
    return build_report(
        spec,
        wall_seconds=time.perf_counter() - wall_start,
        devices=["loopback"] * spec.nodes,
        counters=run.totals,
        network={},
        churn={"crashes": run.crashes, "sessions": spec.nodes + run.crashes},
        observer=run.observer,
    )


class _Run:
    def __init__(self, spec: Scenario) -> None:
        self.spec = spec
        self.observer = SwarmObserver()
        self.totals: dict[str, Tally[str]] = {}
        self.crashes = 0
        self._past: dict[int, dict[str, Tally[str]]] = {}

    def execute(self, group: DaemonGroup, progress: Progress | None) -> None:
        spec = self.spec
        names = [f"{i:05d}" for i in range(spec.nodes)]
        daemons: list[Daemon] = [group.spawn(names[0])]
        seeds = [daemons[0].status()["addresses"][0]]
        for name in names[1 : spec.bootstrap]:
            daemons.append(group.spawn(name, bootstrap=seeds))
            seeds.append(daemons[-1].status()["addresses"][0])
        daemons += [group.spawn(name, bootstrap=seeds, ready=False) for name in names[spec.bootstrap :]]
        for daemon in daemons:
            daemon.wait_ready()
        events = self._churn_schedule()
        start = time.monotonic()
        next_sample = spec.sample_interval
        while True:
            now = time.monotonic() - start
            while events and events[0][0] <= now:
                _, index, action = events.pop(0)
                daemons[index] = self._apply(group, daemons[index], index, action)
            if now >= next_sample or now >= spec.duration:
                self._sample(now, daemons)
                if progress is not None:
                    progress(min(now, spec.duration))
                next_sample += spec.sample_interval
            if now >= spec.duration:
                break
            time.sleep(min(0.1, max(0.0, next_sample - now)))
        for index, daemon in enumerate(daemons):
            add_counters(self.totals, self._counters_of(index, daemon))

    def _churn_schedule(self) -> list[tuple[float, int, str]]:
        """(time, node index, "kill" or "start"), seeded, over the churn window."""
        churn = self.spec.churn
        candidates = list(range(self.spec.bootstrap, self.spec.nodes))
        count = round(churn.fraction * len(candidates))
        events = []
        for index in derive_rng(self.spec.seed, "churn").sample(candidates, count) if count else []:
            rng = derive_rng(self.spec.seed, "churn", index)
            t = churn.start
            while True:
                t += rng.expovariate(1 / churn.mean_up)
                if t >= churn.end:
                    break
                events.append((t, index, "kill"))
                t = min(t + rng.expovariate(1 / churn.mean_down), churn.end)
                events.append((t, index, "start"))
        return sorted(events)

    def _apply(self, group: DaemonGroup, daemon: Daemon, index: int, action: str) -> Daemon:
        if action == "kill" and daemon.running:
            add_counters(self._past.setdefault(index, {}), self._counters_of(None, daemon))
            daemon.kill()
            self.crashes += 1
            return daemon
        if action == "start" and not daemon.running:
            return group.restart(daemon)
        return daemon

    def _counters_of(self, index: int | None, daemon: Daemon) -> dict[str, Tally[str]]:
        totals: dict[str, Tally[str]] = {}
        if index is not None:
            add_counters(totals, self._past.get(index, {}))
        if daemon.running:
            try:
                status = daemon.status()
            except ControlError:
                return totals
            add_counters(totals, status["counters"])
            add_counters(totals, {"transport": status["transport"]})
        return totals

    def _sample(self, now: float, daemons: list[Daemon]) -> None:
        statuses = []
        membership: Tally[str] = Tally()
        for index, daemon in enumerate(daemons):
            if daemon.running:
                try:
                    statuses.append(daemon.status())
                except ControlError:
                    continue  # between kill and restart, or still starting
            membership.update(self._past.get(index, {}).get("membership", {}))
        for status in statuses:
            membership.update(status["counters"].get("membership", {}))
        self.observer.sample(
            now, {s["peer_id"]: s["view"] for s in statuses}, (s["heard_from"] for s in statuses), membership
        )
