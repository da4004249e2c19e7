"""FED-PUB on a Planetoid graph in the simulator: 10 clients, non-overlapping METIS parts, 100 rounds.

Every number comes from Flower runs over the swarm's virtual network (node 0 hosts, nodes
1-10 are clients), one run per method on the same clients. Printed: per seed, mean client
test accuracy at the round of best mean validation accuracy for FED-PUB, FedAvg and
local-only, then their mean +- std over the seeds (each seed draws its own train/validation/
test split, METIS parts and initial weights). Then, once (first seed; ``--skip-extras`` leaves
them out): FED-PUB with regularisers that produce gradients; a robustness table (2 of 10
clients send 10 x N(0,1) instead of their update; FedAvg vs FedMedian, FedTrimmedAvg and
Krum); a dropout run (3 of 10 clients crash in round 2; the round must complete); and the
wall time of one FedAvg round over our Grid. After each seed it prints the process's RSS
and peak RSS (they should stay flat from seed to seed). The last line is
``fedpub=<mean acc> fedavg=<mean acc> local=<mean acc>``.

``--data`` is a Planetoid root holding ``<dataset>/raw`` (the standard ind.<name>.* files);
it may contain ':'. ``--dataset`` is Cora, CiteSeer or PubMed.

    python benchmarks/fedpub.py --data ../shared/data/Planetoid [--dataset Cora] [--seeds 3] [--rounds N]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from pathlib import Path

import msgspec

from edgeswarm.learning.graphs import PLANETOID
from edgeswarm.sim.fl_workload import FlSpec
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent


def _memory() -> str:
    """This process's resident memory now and its peak so far, in MB (Linux: ru_maxrss is KB)."""
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    return f"RSS {rss:.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"


def _dataset(name: str) -> str:
    """Cora, CiteSeer or PubMed, whatever the case typed."""
    return {n.lower(): n for n in PLANETOID}.get(name.lower(), name)


def simulate(base, **fl) -> dict:
    workload = msgspec.structs.replace(base.scenario.fl, **fl)
    loaded = msgspec.structs.replace(base, scenario=msgspec.structs.replace(base.scenario, fl=workload))
    return run_scenario(loaded, out_dir=None)


def compare_with_superlink(clients: int = 2) -> None:
    """One FedAvg round of the same ClientApp: daemons over libp2p vs superlink + supernodes."""
    import tempfile

    from edgeswarm.sim.fl_daemons import run_swarm_round
    from edgeswarm.sim.flower_deployment import run_flower_round

    with tempfile.TemporaryDirectory(prefix="edgeswarm-compare-") as tmp:
        swarm = run_swarm_round(Path(tmp) / "swarm", clients=clients, rounds=1)
        flower = run_flower_round(Path(tmp) / "flower", clients=clients, rounds=1)
    ours = swarm["history"][0]["seconds"]
    print(
        f"One FedAvg round, {clients} clients, built-in graph, real processes on loopback: "
        f"swarm Grid over libp2p {ours:.2f} s, flower-superlink + supernodes {flower['seconds']:.2f} s "
        f"(ratio {flower['seconds'] / ours:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Planetoid root: holds <dataset>/raw")
    parser.add_argument("--dataset", choices=PLANETOID, type=_dataset, default="Cora")
    parser.add_argument("--seeds", type=int, default=3, help="runs with different splits, parts and weights")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--robust-rounds", type=int, default=30)
    parser.add_argument("--skip-extras", action="store_true", help="only the three accuracy runs per seed")
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    base = load_scenario(REPO / "configs/sim/fedpub.toml")
    source = f"planetoid:{args.data.resolve()}:{args.dataset}"
    common = {
        "graph_source": source,
        "clients": 10,
        "partition_mode": "disjoint",
        "rounds": args.rounds,
        "train_config": {"lr": 0.01, "local-epochs": 1},
    }
    assert isinstance(base.scenario.fl, FlSpec)

    started = time.perf_counter()
    methods = ("fedpub", "fedavg", "local")
    scores: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(args.seeds):  # seed 0 is the single run this benchmark made before it took seeds
        seeded = msgspec.structs.replace(
            base, scenario=msgspec.structs.replace(base.scenario, seed=base.scenario.seed + i)
        )
        run = simulate(seeded, strategies=list(methods), seed=base.scenario.fl.seed + i, **common)
        acc, best = run["metrics"]["accuracy"], run["metrics"]["best_round"]
        print(
            f"{args.dataset}, 10 clients, disjoint, {args.rounds} rounds, seed {i} ({run['wall_seconds']:.0f} s wall): "
            + ", ".join(f"{m} {acc[m]:.4f} (round {best[m]})" for m in methods)
        )
        print(f"  memory after seed {i}: {_memory()}")
        for m in methods:
            scores[m].append(acc[m])
    print(f"{args.dataset}: test accuracy at the best validation round, mean +- std over {args.seeds} seeds:")
    for m in methods:
        spread = statistics.stdev(scores[m]) if len(scores[m]) > 1 else 0.0
        print(f"  {m:8s} {statistics.mean(scores[m]):.4f} +- {spread:.4f}")
    acc = {m: scores[m][0] for m in methods}  # the extras compare with the first seed's run

    if not args.skip_extras:
        grad = simulate(
            base, strategies=["fedpub"], **{**common, "train_config": {**common["train_config"], "regularise": "grad"}}
        )
        print(
            f"  fedpub with regularisers that produce gradients = {grad['metrics']['accuracy']['fedpub']:.4f} "
            f"(official, detached: {acc['fedpub']:.4f})"
        )
        robust_common = {
            **common,
            "rounds": args.robust_rounds,
            "train_config": {**common["train_config"], "local-epochs": 5},
        }
        robust = simulate(
            base,
            strategies=["fedavg", "fedmedian", "fedtrimmedavg", "krum"],
            malicious=2,
            malicious_scale=10.0,
            **robust_common,
        )
        clean = simulate(base, strategies=["fedavg"], **robust_common)
        print(
            f"Robustness, {args.robust_rounds} rounds of 5 local epochs, 2 of 10 clients send 10 x N(0,1) "
            "instead of their update (mean test accuracy of the 8 honest clients' evaluations at best validation):"
        )
        print(f"  {'fedavg without attackers':24s}  {clean['metrics']['accuracy']['fedavg']:.4f}")
        for method, value in robust["metrics"]["accuracy"].items():
            print(f"  {method:24s}  {value:.4f}")
        dropout = simulate(
            base, strategies=["fedavg"], dropout=3, dropout_round=2, min_clients=5, **{**common, "rounds": 4}
        )
        rounds = dropout["fl_series"]["fedavg"]["rounds"]
        print(
            "Dropout: 3 of 10 clients crash in round 2 (minimum 5): "
            + ", ".join(
                f"round {r['round']} {r['status']} ({r['replies']} replies, {r['failures']} failed)" for r in rounds
            )
        )
        compare_with_superlink()
    print(f"total wall {time.perf_counter() - started:.0f} s; {_memory()}")
    means = {m: statistics.mean(scores[m]) for m in methods}
    print(f"fedpub={means['fedpub']:.4f} fedavg={means['fedavg']:.4f} local={means['local']:.4f}")


if __name__ == "__main__":
    main()
