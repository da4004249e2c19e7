"""A federated run between real daemons over libp2p, driven by the CLI's control commands."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch_geometric")

from edgeswarm.sim.processes import DaemonGroup  # noqa: E402

from edgeswarm.sim.fl_daemons import daemon_config  # noqa: E402

from conftest import wait_until  # noqa: E402


def config(tmp_path, name: str, partition: int, auto_join: bool = True):
    return daemon_config(tmp_path, name, partition=partition, clients=3, auto_join=auto_join)


def test_daemons_host_and_join_a_fedavg_run_over_libp2p(tmp_path):
    with DaemonGroup(tmp_path / "swarm") as group:
        host = group.spawn("host", args=config(tmp_path, "host", 0, auto_join=False))
        seed = host.status()["addresses"][0]
        auto = group.spawn("auto", bootstrap=[seed], args=config(tmp_path, "auto", 1))
        manual = group.spawn("manual", bootstrap=[seed], args=config(tmp_path, "manual", 2, auto_join=False))
        wait_until(lambda: len(host.status()["peers"]) >= 2, timeout=30)
        wait_until(lambda: all(len(d.status()["peers"]) >= 1 for d in (auto, manual)), timeout=30)

        with pytest.raises(Exception, match="unknown strategy"):
            host.request({"cmd": "fl_host", "task": "subgraph", "strategy": "nope"})
        round_id = host.request({"cmd": "fl_host", "task": "subgraph", "strategy": "fedavg", "rounds": 2,
                                 "min_clients": 2})["round_id"]
        wait_until(lambda: any(a["round_id"] == round_id for a in manual.request({"cmd": "fl_status"})["announced"]),
                   timeout=6)
        joined = manual.request({"cmd": "fl_join", "round_id": round_id})
        assert joined["role"] == "client" and joined["host"] == host.status()["peer_id"]

        def done():
            runs = {r["round_id"]: r for r in host.request({"cmd": "fl_status"})["runs"]}
            return runs[round_id]["state"] in ("done", "failed")

        wait_until(done, timeout=120, every=1.0)
        run = next(r for r in host.request({"cmd": "fl_status"})["runs"] if r["round_id"] == round_id)
        assert run["state"] == "done", run
        assert len(run["participants"]) == 2
        assert [r["status"] for r in run["history"]] == ["ok", "ok"]
        assert all(len(r["clients"]) == 2 and all(0 < c["test-acc"] <= 1 for c in r["clients"].values())
                   for r in run["history"])
        # the clients follow the run to its end: their own metrics per round, then "done"
        wait_until(lambda: next(r for r in auto.request({"cmd": "fl_status"})["runs"]
                                if r["round_id"] == round_id)["state"] == "done", timeout=10)
        mine = next(r for r in auto.request({"cmd": "fl_status"})["runs"] if r["round_id"] == round_id)
        assert [r["round"] for r in mine["history"]] == [1, 2] and "test-acc" in mine["history"][-1]["evaluate"]
        # and the host's history outlives a restart (read back from its store)
        host = group.restart(host)
        kept = next(r for r in host.request({"cmd": "fl_status"})["runs"] if r["round_id"] == round_id)
        assert kept["state"] == "done" and [r["status"] for r in kept["history"]] == ["ok", "ok"]
    for daemon in group.daemons:
        assert "Traceback" not in daemon.log(), daemon.log()
