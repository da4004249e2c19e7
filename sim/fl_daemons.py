"""A federated run between real daemon processes over libp2p on loopback.

The swarm-side counterpart of ``flower_deployment.run_flower_round``: one host and N client
daemons, the run driven through the control API as ``edgeswarm fl host`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeswarm.protocols.limits import TransportLimits

from .processes import DaemonGroup

GOSSIP_DEGREE = TransportLimits().gossip_degree  # a mesh holds at most about this many peers

FAST = """
[membership]
shuffle_interval = 1.0
request_timeout = 3.0
[presence]
interval = 1.0
[network]
eclipse_protection = false
[federation]
enabled = true
auto_join = {auto_join}
join_window = {join_window}
reply_timeout = 120.0
[federation.tasks.subgraph]
graph-source = "{graph_source}"
num-partitions = {clients}
partition-id = {partition}
"""


def daemon_config(
    work: Path,
    name: str,
    *,
    partition: int,
    clients: int,
    auto_join: bool = True,
    join_window: float = 300.0,
    graph_source: str = "builtin",
) -> list[str]:
    """``--config`` arguments for a daemon offering client partition ``partition``."""
    path = work / f"{name}.toml"
    path.write_text(
        FAST.format(
            auto_join=str(auto_join).lower(),
            join_window=join_window,
            graph_source=graph_source,
            clients=clients,
            partition=partition,
        )
    )
    return ["--config", str(path)]


def run_swarm_round(
    work: Path,
    *,
    clients: int = 2,
    rounds: int = 1,
    strategy: str = "fedavg",
    graph_source: str = "builtin",
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Host a run on a daemon with ``clients`` auto-joining daemons; returns the host's run record."""
    work.mkdir(parents=True, exist_ok=True)
    with DaemonGroup(work / "swarm") as group:
        host = group.spawn(
            "host",
            args=daemon_config(work, "host", partition=0, clients=clients, auto_join=False, graph_source=graph_source),
        )
        seed = host.status()["addresses"][0]
        for i in range(clients):
            group.spawn(
                f"client{i}",
                bootstrap=[seed],
                args=daemon_config(work, f"client{i}", partition=i, clients=clients, graph_source=graph_source),
            )
        # every client connected, and in the host's gossip mesh: the announcement reaches them all
        host.wait(peers=clients, gossip_peers=min(clients, GOSSIP_DEGREE))
        run_id = host.request(
            {
                "cmd": "fl_host",
                "task": "subgraph",
                "strategy": strategy,
                "rounds": rounds,
                "min_clients": clients,
                "max_clients": clients,
            }
        )["run_id"]
        return host.request({"cmd": "fl_wait", "run_id": run_id, "timeout": timeout}, timeout=timeout + 30)
