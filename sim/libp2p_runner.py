"""Run a scenario on real libp2p: one ``edgeswarm node run`` process per node on 127.0.0.1.

The swarm itself (joins, membership, gossip, churn) and the same ``report.json`` as the
virtual network, in wall-clock time over real Noise/yamux/GossipSub connections, with the
same churn schedule (``sim.churn``), observation and counter totals (``sim.observe``).
No workload runs here: ``load_scenario`` refuses a libp2p scenario that names one. Churn is
``kill -9`` and a restart from the node's data dir. Every process started is stopped when
the run ends, also on errors and Ctrl-C (``DaemonGroup``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import tomli_w

from edgeswarm.node.control.client import ControlError
from edgeswarm.node.node import NodeStatus

from .churn import churn_schedule
from .observe import SwarmObserver, build_report, observe, total_counters
from .processes import Daemon, DaemonGroup
from .runner import Progress
from .scenario import LoadedScenario, Scenario
from .tallies import Tallies


def run_libp2p_scenario(loaded: LoadedScenario, *, out_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    spec = loaded.scenario
    if spec.workload is not None:  # load_scenario refuses these; a caller that built one by hand is told too
        raise ValueError(f"the {spec.workload[0].name} workload runs on the virtual network only")
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


class _Member:
    """One daemon process across its restarts, as the observer sees it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.tallies = Tallies()

    def status(self) -> NodeStatus | None:
        if not self.daemon.running:
            return None
        try:
            return msgspec.convert(self.daemon.status(), NodeStatus)
        except ControlError:
            return None  # still starting, or between kill and restart


class _Run:
    def __init__(self, spec: Scenario) -> None:
        self.spec = spec
        self.observer = SwarmObserver()
        self.totals: dict[str, Any] = {}
        self.crashes = 0

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
        members = [_Member(daemon) for daemon in daemons]
        events = sorted(
            (at, index, action) for index, timeline in churn_schedule(spec).items() for at, action in timeline
        )
        start = time.monotonic()
        next_sample = spec.sample_interval
        while True:
            now = time.monotonic() - start
            while events and events[0][0] <= now:
                _, index, action = events.pop(0)
                self._apply(group, members[index], action)
            if now >= next_sample or now >= spec.duration:
                observe(self.observer, now, members)
                if progress is not None:
                    progress(min(now, spec.duration))
                next_sample += spec.sample_interval
            if now >= spec.duration:
                break
            time.sleep(min(0.1, max(0.0, next_sample - now)))
        self.totals = total_counters(members)

    def _apply(self, group: DaemonGroup, member: _Member, action: str) -> None:
        if action == "crash" and member.daemon.running:
            last = member.status()
            if last is not None:
                member.tallies.end_session(last)
            member.daemon.kill()
            self.crashes += 1
        elif action == "start" and not member.daemon.running:
            member.daemon = group.restart(member.daemon)
