"""Once-for-All subnets: the ofa import shim, genomes, ONNX cost, predictors, search,
weight-sharing aggregation, and subnet selection into a data dir."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("pymoo")

from edgeswarm.learning import cost, nas, supernet
from edgeswarm.learning.supernet import EDGE
from edgeswarm.learning.weight_sharing import aggregate, touched


def test_the_ofa_import_shim_still_works():
    """If this fails, a new `ofa` release changed what learning/ofa_shim.py works around."""
    from edgeswarm.learning.ofa_shim import OFAMobileNetV3, set_running_statistics

    assert "ofa.utils.my_dataloader" in sys.modules
    net = supernet.build()
    assert isinstance(net, OFAMobileNetV3) and callable(set_running_statistics)
    assert 800_000 < sum(p.numel() for p in net.parameters()) < 1_000_000  # width 0.5 edge space


def test_genomes_decode_within_bounds_and_have_one_canonical_form():
    assert EDGE.genome_length == 35
    assert EDGE.decode(EDGE.largest()) == {"ks": [5] * 15, "e": [4] * 15, "d": [3] * 5}
    with pytest.raises(ValueError):
        EDGE.decode(EDGE.upper_bounds + 1)
    with pytest.raises(ValueError):
        EDGE.decode([0] * 34)
    shallow = EDGE.largest()
    shallow[30:] = 0  # depth 1 everywhere: blocks 2 and 3 of each stage are skipped
    canonical = EDGE.active_genes(shallow)
    assert canonical[1] == 0 and canonical[0] == 1 and canonical[15 + 2] == 0
    rng = random.Random(0)
    assert all(np.array_equal(EDGE.active_genes(g), g) for g in (EDGE.random(rng) for _ in range(20)))


def test_onnx_export_runs_the_same_subnet_in_onnxruntime(tmp_path):
    net = supernet.build().eval()
    supernet.activate(net, EDGE.random(random.Random(1)))
    model = net.get_active_subnet(preserve_weight=True).eval()
    path = cost.export_onnx(model, tmp_path / "m.onnx")
    x = torch.randn(4, 3, supernet.IMAGE, supernet.IMAGE)
    ours = cost.session(path).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(ours, model(x).numpy(), atol=1e-4)
    assert cost.measure_latency_ms(path, repeats=5) > 0
    small, large = (supernet.build().eval() for _ in range(2))
    supernet.activate(small, EDGE.smallest())
    supernet.activate(large, EDGE.largest())
    assert cost.macs(small.get_active_subnet()) < cost.macs(large.get_active_subnet())


def synthetic(genome):
    """A known landscape: accuracy and latency linear in the one-hot features."""
    f = nas.features(EDGE, genome)[0]
    w = np.random.default_rng(0).random(f.shape[0])
    return float(0.5 + f @ w / (4 * w.sum())), float(0.2 + f @ w / 20)


def test_ridge_predictor_recovers_a_linear_landscape():
    rng = random.Random(2)
    genomes = np.array([EDGE.random(rng) for _ in range(120)])
    latency = np.array([synthetic(g)[1] for g in genomes])
    predictor = nas.Predictor(EDGE, alpha=1e-3).fit(genomes[:80], latency[:80])
    assert nas.mape(predictor.predict(genomes[80:]), latency[80:]) < 0.02


def test_pareto_front_and_hypervolume_match_hand_computation():
    points = np.array([[0.1, 2.0], [0.2, 1.0], [0.3, 3.0]])
    assert nas.pareto(points).tolist() == [0, 1]
    assert nas.hypervolume(points, (1.0, 4.0)) == pytest.approx(0.9 * 2.0 + 0.8 * 1.0)
    assert nas.evals_to_reach([0.1, 0.5, 0.9], 0.5) == 2 and nas.evals_to_reach([0.1], 0.5) is None


def test_searches_spend_exactly_their_measurement_budget():
    linas, _ = nas.linas(nas.Archive(EDGE, synthetic), budget=24, initial=8, per_iteration=4, generations=10)
    assert len(linas) == 24
    plain = nas.nsga2_measured(nas.Archive(EDGE, synthetic), budget=24, population=8)
    assert len(plain) >= 24  # NSGA-II measures whole generations
    archive = nas.random_search(nas.Archive(EDGE, synthetic), budget=10)
    archive(archive.genomes[0])  # measuring a known subnet again costs nothing
    assert len(archive) == 10


def test_weight_sharing_averages_each_entry_over_the_clients_that_trained_it():
    current = {"w": np.zeros(4, np.float32), "steps": np.array(7)}
    a = (
        {"w": np.array([1, 1, 9, 9], np.float32), "steps": np.array(8)},
        {"w": np.array([1, 1, 0, 0], bool), "steps": np.array(True)},
        1.0,
    )
    b = (
        {"w": np.array([9, 5, 5, 9], np.float32), "steps": np.array(9)},
        {"w": np.array([0, 1, 1, 0], bool), "steps": np.array(True)},
        3.0,
    )
    merged = aggregate(current, [a, b])
    assert merged["w"].tolist() == [1.0, 4.0, 5.0, 0.0]  # (1*1 + 3*5) / 4 = 4; nobody trained entry 3
    assert merged["steps"] == 7  # counters are not averaged
    everywhere = {"w": np.ones(4, bool), "steps": np.array(True)}
    fedavg = aggregate(current, [(a[0], everywhere, 1.0), (b[0], everywhere, 3.0)])
    assert fedavg["w"] == pytest.approx((a[0]["w"] + 3 * b[0]["w"]) / 4)


def test_a_small_subnet_trains_only_its_own_entries_of_the_supernet():
    net = supernet.build()
    before = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}
    supernet.activate(net, EDGE.smallest())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = supernet.image_data()["train"]
    net.train()
    torch.nn.functional.cross_entropy(net(x[:32]), y[:32]).backward()
    optimizer.step()
    mask = touched(before, {k: v.detach().numpy() for k, v in net.state_dict().items()})
    trained = sum(m.sum() for m in mask.values())
    assert 0 < trained < 0.6 * sum(m.size for m in mask.values())
    name = next(k for k in mask if "blocks.2." in k)  # the second block of stage 1 is skipped at depth 1
    assert not mask[name].any()


def device(name="test", speed=1.0, budget_ms=50.0):
    from edgeswarm.node.subnet.device import DeviceProfile

    return DeviceProfile(
        name=name,
        cores=2,
        memory_mb=1024,
        compute_speed=speed,
        latency_budget_ms=budget_ms,
        energy_budget_j=1.0,
        uplink_mbps=1.0,
        downlink_mbps=1.0,
        threads=1,
    )


def assert_choice_is_the_best_verified(result):
    """Whatever this machine measured: the choice is the most accurate subnet measured within
    the budget, after those the verification passed over; the smallest if none fits."""
    from edgeswarm.node.subnet.subnet import choose

    measured = result["measured"]
    ranked = choose([(m["accuracy"], m["latency_ms"]) for m in measured], result["budget_ms"])
    chosen = result["config"]["genome"]
    if ranked:
        assert chosen == measured[ranked[result["passed_over"]]]["genome"]
    else:
        assert chosen == [int(v) for v in EDGE.active_genes(EDGE.smallest())] and not result["fits"]
    assert result["fits"] == (result["measured_latency_ms"] <= result["budget_ms"])
    assert result["validation_accuracy"] == round(next(m["accuracy"] for m in measured if m["genome"] == chosen), 4)


def test_subnet_select_writes_a_verified_onnx_model_and_its_progress_agrees(tmp_path):
    """Real onnxruntime timings on this machine, whatever its speed: only invariants."""
    from edgeswarm.node.subnet.subnet import classify, select

    checkpoint = tmp_path / "supernet.pt"
    torch.save({"state_dict": supernet.load().state_dict()}, checkpoint)  # a checkpoint a user already has
    seen = []
    result = select(
        device(budget_ms=1.0), tmp_path / "node", checkpoint=checkpoint, budget=8, progress=lambda *a: seen.append(a)
    )
    assert set(result) >= {
        "onnx_path",
        "config",
        "predicted_latency_ms",
        "measured_latency_ms",
        "budget_ms",
        "accuracy",
    }
    assert_choice_is_the_best_verified(result)
    m = result["measurements"]
    assert m in (8, 9) and len(result["measured"]) == m  # 9: nothing fitted, and the smallest was measured too
    assert len(seen) == m and seen[-1] == (m, m, 0) and [s[0] for s in seen] == list(range(1, m + 1))
    assert (tmp_path / "node" / "subnet" / "config.json").exists()
    x, y = supernet.image_data()["test"]
    assert (classify(tmp_path / "node", x[:100].numpy()) == y[:100].numpy()).mean() > 0.5
    again = select(device(budget_ms=1.0), tmp_path / "node", checkpoint=checkpoint, budget=8)
    assert again["from_cache"] == again["measurements"] == m  # a rerun measures nothing new


def test_the_choice_is_the_most_accurate_within_budget_and_a_larger_budget_is_never_worse():
    import random

    from edgeswarm.node.subnet.subnet import choose

    rng = random.Random(5)
    for _ in range(200):
        results = [(round(rng.uniform(0.9, 1.0), 2), rng.uniform(0.05, 1.0)) for _ in range(rng.randint(1, 30))]
        small, large = sorted(rng.uniform(0.0, 1.1) for _ in range(2))
        for limit in (small, large):
            ranked = choose(results, limit)
            fitting = [r for r in results if r[1] <= limit]
            assert len(ranked) == len(fitting)
            if fitting:
                assert results[ranked[0]] == max(fitting, key=lambda r: (r[0], -r[1]))
        a, b = choose(results, small), choose(results, large)
        if a:  # the larger budget's pick is not worse on both axes: more accurate, or as accurate and as fast
            (acc_a, lat_a), (acc_b, lat_b) = results[a[0]], results[b[0]]
            assert acc_b > acc_a or (acc_b == acc_a and lat_b <= lat_a)


@pytest.fixture
def latency_by_macs(monkeypatch):
    """Latency as a fixed function of a subnet's MACs (1 ms per million) instead of a timer:
    the same numbers on every machine, so a test can say exactly what must be chosen."""
    exported = {}

    def export_onnx(model, path):
        exported[str(path)] = cost.macs(model) / 1e6
        return real_export(model, path)

    real_export = cost.export_onnx
    monkeypatch.setattr(cost, "export_onnx", export_onnx)
    monkeypatch.setattr(cost, "measure", lambda model, threads=1, repeats=50: (cost.macs(model) / 1e6, 0))
    monkeypatch.setattr(cost, "measure_latency_ms", lambda path, threads=1, repeats=50, **kw: exported[str(path)])


def test_selection_is_cached_in_the_data_dir_and_a_faster_device_is_never_worse(tmp_path, latency_by_macs):
    from edgeswarm.node.subnet.subnet import select

    seen = []
    # every subnet takes 0.44 to 1.1 ms here, 1.27 ms and more on a device at 0.35x: none fits 1 ms
    slow = select(device("slow", 0.35, 1.0), tmp_path, budget=10, progress=lambda *a: seen.append(a))
    assert not slow["fits"] and slow["config"]["genome"] == [int(v) for v in EDGE.active_genes(EDGE.smallest())]
    m = slow["measurements"]
    assert m == 11 and slow["from_cache"] == 0 and len(seen) == m and seen[-1] == (m, m, 0)  # 10 + the smallest
    assert (tmp_path / "subnet" / "measurements.json").exists()
    fast = select(device("fast", 2.5, 0.25), tmp_path, budget=10)  # 0.625 ms of this machine's: some fit
    assert fast["fits"] and fast["from_cache"] == fast["measurements"] == 10  # the same search, all cached
    assert_choice_is_the_best_verified(fast)
    roomy = select(device("roomy", 2.5, 0.5), tmp_path, budget=10)  # a larger budget: never a worse choice
    assert roomy["fits"] and roomy["validation_accuracy"] >= fast["validation_accuracy"]
    assert_choice_is_the_best_verified(roomy)
    again = select(device("slow", 0.35, 1.0), tmp_path, budget=10)
    assert again["from_cache"] == again["measurements"] == 11 and again["config"]["genome"] == slow["config"]["genome"]


def test_a_damaged_measurement_cache_is_set_aside_not_trusted(tmp_path):
    import numpy as np

    from edgeswarm.node.subnet.subnet_cache import SubnetCache

    path = tmp_path / "measurements.json"
    path.write_text('{"version": 1, "accuracy": {"w": {"1,2": "x"}}')  # cut short by a crash elsewhere
    cache = SubnetCache(path)
    assert cache.accuracy == {} and (tmp_path / "measurements.json.bad").exists()
    cache.put(cache.latency, "m", np.array([1, 2]), 0.5)
    cache.save()
    assert SubnetCache(path).get(SubnetCache(path).latency, "m", np.array([1, 2])) == 0.5


@pytest.mark.slow  # 35 s; weight sharing and subnet training are tested above on their own
def test_devices_pick_different_subnets_and_train_them_federatedly_in_the_simulator():
    from pathlib import Path

    import msgspec

    from edgeswarm.sim.fl_workload import device_genome
    from edgeswarm.sim.runner import run_scenario
    from edgeswarm.sim.scenario import load_scenario

    phone, gateway = device_genome(1.0, 0.35), device_genome(0.25, 2.5)
    assert phone != gateway
    loaded = load_scenario(Path(__file__).resolve().parent.parent / "configs/sim/ofa.toml")
    fl = msgspec.structs.replace(loaded.scenario.fl, clients=2, rounds=1)
    scenario = msgspec.structs.replace(loaded.scenario, nodes=3, fl=fl, devices={"phone": 0.5, "gateway": 0.5}, seed=3)
    report = run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)
    assert report["metrics"]["rounds_ok"] == {"weightsharing": 1}
    assert report["metrics"]["accuracy"]["weightsharing"] > 0.9


def test_subnet_select_and_infer_commands(tmp_path):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from edgeswarm.node.cli import app

    runner = CliRunner()
    phone = Path(__file__).resolve().parent.parent / "configs/devices/phone.toml"
    result = runner.invoke(
        app, ["subnet", "select", "--device", str(phone), "--data-dir", str(tmp_path), "--measurements", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    chosen = json.loads(result.stdout)
    assert chosen["budget_ms"] == 1.0 and Path(chosen["onnx_path"]).exists()
    assert len(chosen["config"]["d"]) == 5 and len(chosen["config"]["genome"]) == 35
    m = chosen["measurements"]  # 8, or 9 where nothing fits this machine's phone budget
    assert f"{m}/{m}" in result.stderr  # the search's progress
    repeated = runner.invoke(
        app, ["subnet", "select", "--device", str(phone), "--data-dir", str(tmp_path), "--measurements", "8"]
    )
    assert repeated.exit_code == 0 and f"({m} from the cache)" in repeated.stderr
    inferred = runner.invoke(app, ["subnet", "infer", "--data-dir", str(tmp_path)])
    assert inferred.exit_code == 0 and "accuracy" in inferred.stdout
    empty = runner.invoke(app, ["subnet", "infer", "--data-dir", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "subnet select" in empty.output
    both = runner.invoke(
        app, ["subnet", "select", "--device", str(phone), "--budget-ms", "1", "--data-dir", str(tmp_path)]
    )
    assert both.exit_code == 2


def test_a_checkpoint_of_the_published_imagenet_space_loads_from_a_local_path(tmp_path):
    from edgeswarm.learning.supernet import IMAGENET_MBV3

    reference = supernet.build(IMAGENET_MBV3, classes=1000)
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.0.pt"
    torch.save({"state_dict": reference.state_dict()}, path)
    loaded = supernet.load(path, IMAGENET_MBV3, classes=1000)
    name, value = next(iter(reference.state_dict().items()))
    assert torch.equal(loaded.state_dict()[name], value)
    assert IMAGENET_MBV3.genome_length == 2 * 20 + 5
    with pytest.raises(supernet.CheckpointError, match="does not fit"):  # the edge space cannot take it
        supernet.load(path)
