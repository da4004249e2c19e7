"""SemSpaceFL building blocks: orbit geometry, association, energy, two-tier aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from edgeswarm.learning.hierarchy import (
    EnergyModel,
    aggregate,
    flat_fedavg,
    hier_fedavg_weights,
    semspace_weights,
)
from edgeswarm.learning.orbits import EARTH_RADIUS, Gateway, Walker, association, elevation_deg, trace_association


def test_orbit_period_and_altitude_follow_keplers_law():
    walker = Walker(altitude_m=550_000.0)
    assert walker.period_s / 60 == pytest.approx(95.6, abs=0.3)  # a 550 km LEO orbit: about 95.6 minutes
    radius = np.linalg.norm(walker.positions(1234.0), axis=-1)
    assert np.allclose(radius, EARTH_RADIUS + 550_000.0)
    assert np.allclose(walker.positions(0.0), walker.positions(walker.period_s), atol=1e-3)  # inertial, closed


def test_visibility_windows_have_plausible_length_for_leo():
    walker, station = Walker(planes=1, per_plane=1, inclination_deg=0.0), Gateway("equator", 0.0, 0.0)
    times = np.arange(0.0, 6 * 3600.0, 5.0)
    visible = elevation_deg(walker.positions(times), station.position(times))[:, 0] >= 10.0
    edges = np.flatnonzero(np.diff(visible.astype(int)))
    windows = (
        [(b - a) * 5.0 for a, b in zip(edges[::2], edges[1::2])]
        if not visible[0]
        else [(b - a) * 5.0 for a, b in zip(edges[1::2], edges[2::2])]
    )
    assert windows and all(240 < w < 900 for w in windows)  # a few minutes per pass at 550 km


def test_association_shares_are_fractions_of_the_round_and_zero_when_never_visible():
    walker = Walker()
    gateways = [Gateway("delft", 52.0, 4.4), Gateway("nairobi", -1.3, 36.8)]
    share = association(walker, gateways, 0.0, 600.0)
    assert share.shape == (40, 2) and np.all(share >= 0) and np.all(share.sum(axis=1) <= 1 + 1e-9)
    polar = association(Walker(inclination_deg=0.0), [Gateway("pole", 89.0, 0.0)], 0.0, 600.0)
    assert np.all(polar == 0)  # equatorial orbits never rise above a polar gateway's horizon
    assert trace_association(np.array([[0, 1], [0, -1], [1, -1], [-1, -1]])).tolist() == [[0.5, 0.25], [0.0, 0.25]]


def test_a_satellite_no_gateway_sees_contributes_nothing():
    models = [{"w": np.array([1.0])}, {"w": np.array([100.0])}, {"w": np.array([3.0])}]
    share = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.5]])  # satellite 1 is never visible
    pi, rho = semspace_weights(np.array([10, 10, 10]), share, np.ones(3))
    assert pi[1].sum() == 0
    cloud = aggregate(models, pi, rho, {"w": np.zeros(1)})
    assert cloud["w"][0] == pytest.approx((10 * 1.0 + 5 * 3.0) / 15)  # rho: 10 vs 5 of gateway weight


def test_uniform_association_and_equal_energy_make_the_hierarchy_flat_fedavg():
    rng = np.random.default_rng(0)
    models = [{"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3)} for _ in range(12)]
    samples = rng.integers(10, 100, size=12)
    pi, rho = semspace_weights(samples, np.full((12, 4), 0.25), np.full(12, 0.7))
    hierarchical = aggregate(models, pi, rho, models[0])
    flat = flat_fedavg(models, samples)
    assert all(np.allclose(hierarchical[k], flat[k], atol=1e-6) for k in flat)


def test_hierarchical_fedavg_puts_each_satellite_under_its_main_gateway():
    pi, rho = hier_fedavg_weights(np.array([1, 3]), np.array([[0.2, 0.7], [0.5, 0.1]]))
    assert pi.tolist() == [[0.0, 1.0], [1.0, 0.0]] and rho.tolist() == [0.75, 0.25]


def test_energy_grows_with_work_and_with_distance():
    energy = EnergyModel()
    assert energy.computation_j(200, 2) == pytest.approx(2 * energy.computation_j(200, 1))
    assert energy.rate_bps(600e3) > energy.rate_bps(2000e3) > 0
    assert energy.communication_j(8e6, 2000e3) > energy.communication_j(8e6, 600e3)


def test_psnr_and_ssim_match_their_definitions():
    import torch

    from edgeswarm.learning.jscc import psnr, ssim

    x = torch.rand(4, 1, 16, 16) * 0.8
    assert psnr(x, x + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, torch.rand(4, 1, 16, 16)) < 0.5


def test_jscc_reconstructs_better_at_higher_snr_and_worse_under_fading():
    import torch

    from edgeswarm.learning.jscc import JSCC, images, quality, train_steps, transmit

    data = images()
    torch.manual_seed(0)
    model = JSCC()
    train_steps(model, data["train"], steps=200, snr_db=10.0)
    low, high = quality(model, data["test"], 0.0), quality(model, data["test"], 20.0)
    assert high[0] > low[0] + 3 and high[1] > low[1]
    assert quality(model, data["test"], 0.0, "rayleigh")[0] < low[0]
    with pytest.raises(ValueError, match="unknown channel"):
        transmit(torch.zeros(1, 4), 10.0, "optical")


def test_semspace_runs_three_schemes_over_the_swarm_with_real_visibility():
    from pathlib import Path

    import msgspec

    from edgeswarm.sim.runner import run_scenario
    from edgeswarm.sim.scenario import load_scenario

    loaded = load_scenario(Path(__file__).resolve().parent.parent / "configs/sim/semspace.toml")
    workload = msgspec.structs.replace(loaded.scenario.semspace, planes=2, per_plane=4, rounds=2, local_steps=3)
    scenario = msgspec.structs.replace(loaded.scenario, nodes=1 + 5 + 8, semspace=workload)
    report = run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)
    metrics = report["metrics"]
    assert set(metrics["psnr_final"]) == {"semspace", "hier_fedavg", "flat_fedavg"}
    flat = report["semspace_series"]["flat_fedavg"]
    assert flat["satellites"] == [8, 8]  # ideal connectivity: every satellite, every round
    hierarchical = report["semspace_series"]["semspace"]["satellites"]
    assert all(0 <= n <= 8 for n in hierarchical)
    assert all(v is not None and v > 5 for v in flat["psnr"])
    served = metrics["satellites_per_gateway_round"]["semspace"]
    assert set(served) <= {"tokyo", "delft", "nairobi", "santiago", "hawaii"}
    assert all(n <= 8 for n in served.values())
    assert metrics["bytes_per_round"]["flat_fedavg"] > metrics["bytes_per_round"]["semspace"]
