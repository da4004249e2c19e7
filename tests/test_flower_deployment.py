"""The node's ClientApp in an ordinary Flower federation (flower-superlink + flower-supernode)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch_geometric")

from edgeswarm.sim.flower_deployment import run_flower_round


@pytest.mark.slow
def test_the_same_client_app_trains_a_round_under_superlink_and_supernodes(tmp_path):
    result = run_flower_round(tmp_path, clients=2, rounds=1, timeout=240)
    assert set(result["train"]) == {"1"} and set(result["evaluate"]) == {"1"}
    assert result["train"]["1"]["train-loss"] > 0
    assert 0.0 < result["evaluate"]["1"]["test-acc"] <= 1.0
