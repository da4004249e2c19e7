"""Eclipse attack in the simulator: Sybils that shuffle as hard as they can (``sim.sybils``).

The same node code on the virtual network. A botnet (each Sybil on a network of its own, so
address diversity cannot help) of 30% of the nodes: with the samplers the Sybil share of
honest views stays near their share of the population and no honest node is eclipsed;
with the plain Cyclon view (``samplers = 0``) the attack takes every honest view.
"""

import pytest
from test_membership_swarm import LAPTOP

from edgeswarm.node.config import MembershipConfig, NodeConfig, PresenceConfig, RankingConfig
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import LoadedScenario, Scenario
from edgeswarm.sim.sybils import SybilSpec


def attack(samplers: int) -> dict:
    scenario = Scenario(
        name="t",
        nodes=50,
        duration=360.0,
        seed=5,
        sybils=SybilSpec(fraction=0.3, machines=0, push_interval=1.0, start=90.0),
        node=NodeConfig(
            membership=MembershipConfig(samplers=samplers),
            presence=PresenceConfig(enabled=False),
            ranking=RankingConfig(enabled=False),
        ),
    )
    return run_scenario(LoadedScenario(scenario, {"laptop": LAPTOP}), out_dir=None)


@pytest.fixture(scope="module")
def defended():
    return attack(samplers=20)


def test_samplers_keep_the_sybil_share_of_honest_views_near_their_population_share(defended):
    m = defended["metrics"]
    assert m["sybil_population_share"] == 0.3
    assert m["sybil_view_share_ratio"] <= 1.5
    after = [row for row in defended["sybil_series"] if row["t"] > 90.0]
    assert after and all(row["eclipsed"] == 0 for row in after)
    assert all(row["view_share_max"] < 1.0 for row in after)
    assert m["sybil_cyclon_share"] > 0.5  # the attack works: Cyclon's own view is mostly theirs


def test_the_plain_cyclon_view_is_captured(defended):
    m = attack(samplers=0)["metrics"]
    assert m["sybil_view_share_ratio"] > 1.5 * defended["metrics"]["sybil_view_share_ratio"]
    assert m["sybil_view_share_ratio"] > 1.5


def test_pushes_beyond_the_limit_are_answered_not_taken_in(defended):
    membership = defended["metrics"]["counters"]["membership"]
    assert membership["pushes_limited"] > 0
