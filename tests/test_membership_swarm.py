"""Hundreds of unmodified nodes on the virtual network: discovery, connectivity, churn."""

import msgspec

from edgeswarm.node.config import NodeConfig, PresenceConfig
from edgeswarm.node.subnet.device import DeviceProfile
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import ChurnSpec, LoadedScenario, NetworkSpec, Scenario

LAPTOP = DeviceProfile(
    name="laptop",
    cores=8,
    memory_mb=16384,
    compute_speed=1.0,
    latency_budget_ms=20,
    energy_budget_j=2000,
    uplink_mbps=40,
    downlink_mbps=200,
)


def simulate(**fields):
    scenario = Scenario(
        name="t", nodes=100, duration=180.0, seed=3, node=NodeConfig(presence=PresenceConfig(enabled=False))
    )
    scenario = msgspec.structs.replace(scenario, **fields)
    return run_scenario(LoadedScenario(scenario, {"laptop": LAPTOP}), out_dir=None)


def test_swarm_discovers_itself_from_three_bootstrap_peers():
    report = simulate()
    overlay = report["metrics"]["membership"]
    assert overlay["live"] == 100
    # every node holds a full view (one slot may be out on a shuffle in flight) ...
    assert overlay["view_size_min"] >= 19
    assert overlay["live_entry_fraction"] == 1.0  # ... of live peers
    assert overlay["coverage"] == 1.0 and overlay["indegree_min"] >= 5  # nobody is forgotten
    assert overlay["strongly_connected"]
    # in-degrees spread evenly: the bootstrap peers are not hubs
    assert overlay["indegree_max"] <= 40
    assert report["metrics"]["counters"].get("rejects", {}) == {}


def test_views_recover_after_ten_percent_churn():
    report = simulate(
        duration=600.0,
        network=NetworkSpec(loss=0.01),
        churn=ChurnSpec(fraction=0.1, start=60.0, end=360.0, mean_up=60.0, mean_down=40.0),
    )
    series = report["timeseries"]
    during = [f for t, f in zip(series["t"], series["live_entry_fraction"]) if 60 < t <= 360]
    assert min(during) < 1.0  # dead peers did appear in views
    assert min(series["online"]) < 100
    churn = report["metrics"]["churn"]
    assert churn["crashes"] >= 10 and churn["sessions"] == 100 + churn["crashes"]
    overlay = report["metrics"]["membership"]
    assert overlay["live"] == 100
    assert overlay["live_entry_fraction"] >= 0.99
    assert overlay["coverage"] == 1.0 and overlay["strongly_connected"]
