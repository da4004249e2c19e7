"""Hardware-aware subnet search on the shipped OFA supernet, measured on this machine.

Side by side on one measurement cache (so noise is shared): LINAS (predictors in the loop),
plain NSGA-II and random search, each with its own budget of real measurements (accuracy
after BatchNorm recalibration, onnxruntime latency with 1 thread). Printed: search wall
time, measurements each needs to reach 95% of the best final hypervolume, the latency
predictor's MAPE on subnets it never saw, and per device profile the chosen subnet's
predicted vs measured latency and accuracy (the profiles share one data dir, so one
measurement cache: they search the same measured subnets). Last line:
``linas_evals=<int> nsga2_evals=<int> random_evals=<int> latency_mape=<float>``
(a method that never reaches the target prints its budget + 1).

    python benchmarks/ofa_search.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgeswarm.learning import cost, nas, supernet
from edgeswarm.node.subnet.device import load_device
from edgeswarm.node.subnet.subnet import select

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller budgets (about 5 minutes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    budgets = {"linas": 64, "nsga2": 64, "random": 64} if args.quick else {"linas": 160, "nsga2": 160, "random": 160}
    net = supernet.load()
    cache: dict[bytes, tuple[float, float]] = {}
    spent = {"seconds": 0.0}

    def measure(genome: np.ndarray) -> tuple[float, float]:
        key = genome.tobytes()
        if key not in cache:
            started = time.perf_counter()
            model = supernet.subnet(net, genome)
            latency, _ = cost.measure(model, threads=1, repeats=30)
            cache[key] = (supernet.evaluate(model, "val"), latency)
            spent["seconds"] += time.perf_counter() - started
        return cache[key]

    archives, walls = {}, {}
    for name, run in (
        ("linas", lambda a, b: nas.linas(a, budget=b, seed=args.seed)[0]),
        ("nsga2", lambda a, b: nas.nsga2_measured(a, budget=b, seed=args.seed)),
        ("random", lambda a, b: nas.random_search(a, budget=b, seed=args.seed)),
    ):
        started = time.perf_counter()
        archives[name] = run(nas.Archive(supernet.EDGE, measure), budgets[name])
        walls[name] = time.perf_counter() - started
    # nadir-based reference point, so both objectives count (accuracy varies by a few points only)
    worst_error = max(1 - acc for a in archives.values() for acc, _ in a.results)
    worst_latency = max(lat for a in archives.values() for _, lat in a.results)
    reference = (1.1 * worst_error, 1.1 * worst_latency)
    curves = {name: nas.hv_curve(a, reference)[: budgets[name]] for name, a in archives.items()}
    target = 0.95 * max(c[-1] for c in curves.values())
    reached = {name: nas.evals_to_reach(c, target) or budgets[name] + 1 for name, c in curves.items()}
    print(f"measurements: {len(cache)} distinct subnets, {spent['seconds']:.0f} s measuring (2 cores)")
    for name in archives:
        print(
            f"  {name:7s} budget {budgets[name]:4d}  wall {walls[name]:6.1f} s  final HV {curves[name][-1]:.4f}  "
            f"measurements to 95% of the best HV: {reached[name]}"
        )

    train = archives["linas"]
    held_out = [(g, r) for g, r in zip(archives["random"].genomes, archives["random"].results) if not train.knows(g)]
    predictor = nas.Predictor(supernet.EDGE).fit(np.array(train.genomes), np.array([lat for _, lat in train.results]))
    predicted = predictor.predict(np.array([g for g, _ in held_out]))
    latency_mape = nas.mape(predicted, np.array([r[1] for _, r in held_out]))
    accuracy_model = nas.Predictor(supernet.EDGE).fit(np.array(train.genomes), np.array([a for a, _ in train.results]))
    accuracy_mape = nas.mape(
        accuracy_model.predict(np.array([g for g, _ in held_out])), np.array([r[0] for _, r in held_out])
    )
    print(
        f"latency predictor (ridge on genome one-hots, fit on the LINAS measurements): MAPE {latency_mape:.3f} "
        f"on {len(held_out)} unseen subnets; accuracy predictor MAPE {accuracy_mape:.3f}"
    )

    with tempfile.TemporaryDirectory(prefix="edgeswarm-subnet-") as tmp:
        for device in ("phone", "laptop", "gateway"):
            profile = load_device(REPO / "configs" / "devices" / f"{device}.toml")
            started = time.perf_counter()
            chosen = select(profile, Path(tmp), budget=24 if args.quick else 40, seed=args.seed)  # one cache
            print(
                f"  {device:8s} budget {chosen['budget_ms']:5.2f} ms: predicted {chosen['predicted_latency_ms']:.3f} ms, "
                f"measured {chosen['measured_latency_ms']:.3f} ms, test accuracy {chosen['accuracy']:.3f}, "
                f"depths {chosen['config']['d']} ({time.perf_counter() - started:.0f} s)"
            )
    print(
        f"linas_evals={reached['linas']} nsga2_evals={reached['nsga2']} random_evals={reached['random']} "
        f"latency_mape={latency_mape:.4f}"
    )


if __name__ == "__main__":
    main()
