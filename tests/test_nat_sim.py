"""The simulator's model of reachability (``sim.nat_model``): private nodes behind NATs,
circuit relays with their byte limit, and hole punching at the measured rate."""

import random

import msgspec
from test_membership_swarm import LAPTOP

from edgeswarm.node.config import NodeConfig
from edgeswarm.sim.nat_model import DIRECT, NatModel
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import LoadedScenario, NetworkSpec, Scenario


def test_routes_go_direct_where_a_connection_exists_and_through_a_relay_otherwise():
    model = NatModel(
        private={"a", "b"}, public=["p", "q", "r"], rng=random.Random(1), hole_punch=1.0, circuit_bytes=100
    )
    online = {"a", "b", "p", "q", "r"}
    assert model.route("a", "p", online) == DIRECT  # a public peer is dialled
    assert model.route("p", "a", online) == DIRECT  # over the connection ``a`` opened
    outsider = next(p for p in ("p", "q", "r") if p not in model.relays["b"])
    relay = model.route(outsider, "b", online)
    assert relay == model.relays["b"][0]
    assert model.route(relay, "b", online) == DIRECT  # a relay reaches ``b`` over its reservation
    assert model.carry(relay, 100) and not model.carry(relay, 101) and model.over_limit == 1
    model.relayed_exchange(outsider, "b")  # a public sender: the private side dials it back
    assert model.route(outsider, "b", online) == DIRECT
    assert model.route("a", "b", online) != DIRECT
    model.relayed_exchange("a", "b")  # two private peers: a hole punch (certain here)
    assert model.route("a", "b", online) == DIRECT and model.punched == 1
    model.offline("b")  # its connections are gone with it
    assert model.route("a", "b", online - {"p", "q", "r"}) is None and model.unreachable == 1


def test_no_hole_punch_succeeds_behind_symmetric_nats():
    model = NatModel(private={"a", "b"}, public=["p"], rng=random.Random(1), hole_punch=0.0)
    for _ in range(3):
        model.relayed_exchange("a", "b")
    assert model.route("a", "b", {"a", "b", "p"}) == "p"
    assert model.report()["private_pairs_upgraded_share"] == 0.0 and model.report()["private_pairs_punched"] == 1


def simulate(**network):
    scenario = Scenario(name="t", nodes=60, duration=240.0, seed=3, node=NodeConfig(), network=NetworkSpec(**network))
    return run_scenario(LoadedScenario(scenario, {"laptop": LAPTOP}), out_dir=None)["metrics"]


def test_a_swarm_with_70_percent_private_nodes_stays_whole():
    public = simulate()
    private = simulate(private_share=0.7)
    symmetric = simulate(private_share=0.7, nat="symmetric")
    assert "nat" not in public
    for run in (private, symmetric):
        assert run["membership"]["coverage"] == 1.0 and run["membership"]["strongly_connected"]
        assert run["membership"]["gossip_coverage"] == public["membership"]["gossip_coverage"]
        nat = run["nat"]
        assert nat["private_nodes"] == 40 and nat["requests_unreachable"] == 0  # 70% of the 57 non-bootstrap
        assert nat["relay_bytes_per_public_node"] > 0
    assert 0.55 <= private["nat"]["private_pairs_upgraded_share"] <= 0.85  # drawn at 70%
    assert symmetric["nat"]["private_pairs_upgraded_share"] == 0.0
    assert symmetric["nat"]["relay_bytes_per_public_node"] > private["nat"]["relay_bytes_per_public_node"]
    assert msgspec.json.encode(private)  # the report stays plain data
