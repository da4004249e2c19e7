"""A federated run between real daemons over libp2p, driven by the CLI's control commands."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch_geometric")

from edgeswarm.sim.fl_daemons import daemon_config
from edgeswarm.sim.processes import DaemonGroup


def config(tmp_path, name: str, partition: int, auto_join: bool = True):
    # a join window no machine runs out of: the run starts once max_clients have joined
    return daemon_config(tmp_path, name, partition=partition, clients=3, auto_join=auto_join)


def test_daemons_host_and_join_a_fedavg_run_over_libp2p(tmp_path):
    with DaemonGroup(tmp_path / "swarm") as group:
        host = group.spawn("host", args=config(tmp_path, "host", 0, auto_join=False))
        seed = host.status()["addresses"][0]
        auto = group.spawn("auto", bootstrap=[seed], args=config(tmp_path, "auto", 1))
        manual = group.spawn("manual", bootstrap=[seed], args=config(tmp_path, "manual", 2, auto_join=False))
        host.wait(peers=2, gossip_peers=2)  # the announcement will reach both

        with pytest.raises(Exception, match="unknown strategy"):
            host.request({"cmd": "fl_host", "task": "subgraph", "strategy": "nope"})
        run_id = host.request(
            {
                "cmd": "fl_host",
                "task": "subgraph",
                "strategy": "fedavg",
                "rounds": 2,
                "min_clients": 2,
                "max_clients": 2,
            }
        )["run_id"]
        manual.wait(counters={"msgs_in.fl.run": 1})
        joined = manual.request({"cmd": "fl_join", "run_id": run_id})
        assert joined["role"] == "client" and joined["host"] == host.status()["peer_id"]
        run = host.request({"cmd": "fl_wait", "run_id": run_id, "timeout": 600}, timeout=630)
        assert run["state"] == "done", run
        assert len(run["participants"]) == 2
        assert [r["status"] for r in run["history"]] == ["ok", "ok"]
        assert all(
            len(r["clients"]) == 2 and all(0 < c["test-acc"] <= 1 for c in r["clients"].values())
            for r in run["history"]
        )
        # the clients follow the run to its end: their own metrics per round, then "done"
        mine = auto.request({"cmd": "fl_wait", "run_id": run_id, "timeout": 120}, timeout=150)
        assert mine["state"] == "done"
        assert [r["round"] for r in mine["history"]] == [1, 2] and "test-acc" in mine["history"][-1]["evaluate"]
        # and the host's history outlives a restart (read back from its store)
        assert host.stop() == 0
        host = group.restart(host)
        kept = next(r for r in host.request({"cmd": "fl_status"})["runs"] if r["run_id"] == run_id)
        assert kept["state"] == "done" and [r["status"] for r in kept["history"]] == ["ok", "ok"]
    for daemon in group.daemons:
        assert "Traceback" not in daemon.log(), daemon.log()
