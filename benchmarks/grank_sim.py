"""The paper's G-Rank run: 100 nodes, 10,000 queries (target < 60 s wall on 2 cores).

Runs ``configs/sim/grank.toml`` (or ``--scenario``) and prints the wall time and the final
RR@10 of G-Rank and of each baseline measured in the same run, for both click models, with
the positional distances and what the gossip cost. ``--gossip pull`` runs the paper's pull
(progress pointer per requester) instead of the default digest pull; ``both`` runs each.

    python benchmarks/grank_sim.py [--click-model top|cascade|both] [--gossip digest|pull|both]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=REPO / "configs/sim/grank.toml")
    parser.add_argument("--click-model", choices=["top", "cascade", "both"], default="both")
    parser.add_argument("--gossip", choices=["digest", "pull", "both"], default="digest")
    parser.add_argument(
        "--anti-entropy",
        type=float,
        default=None,
        metavar="S",
        help="background gossip interval in seconds (0: only after clicks; default: the scenario's)",
    )
    args = parser.parse_args()
    models = ["top", "cascade"] if args.click_model == "both" else [args.click_model]
    gossips = ["digest", "pull"] if args.gossip == "both" else [args.gossip]
    loaded = load_scenario(args.scenario)
    for model in models:
        for gossip in gossips:
            scenario = loaded.scenario
            ranking = msgspec.structs.replace(scenario.node.ranking, gossip=gossip)
            if args.anti_entropy is not None:
                ranking = msgspec.structs.replace(ranking, anti_entropy_interval=args.anti_entropy)
            scenario = msgspec.structs.replace(
                scenario,
                grank=msgspec.structs.replace(scenario.grank, click_model=model),
                node=msgspec.structs.replace(scenario.node, ranking=ranking),
            )
            report = run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)
            m = report["metrics"]
            rr10 = " ".join(f"{k}={v:.3f}" for k, v in m["rr10"].items())
            dist = " ".join(f"{k}={v:.3f}" for k, v in m["positional_distance"].items())
            top = " ".join(f"{k}={v:.3f}" for k, v in m["top_item_rate"].items())
            print(
                f"click_model={model} gossip={gossip} anti_entropy={ranking.anti_entropy_interval:g} "
                f"nodes={report['nodes']} queries={m['queries']} "
                f"wall_s={report['wall_seconds']:.1f} (target<60) rr10: {rr10} | positional_distance: {dist} | "
                f"top_item_rate: {top} | "
                f"log_distance={m['log_distance']:.2f} log_coverage={m['log_coverage']:.3f} "
                f"log_coverage_min={m['log_coverage_min']:.3f} nodes_below_10pct={m['nodes_below_10pct']} "
                f"gossip_mb_per_node={m['gossip_bytes_per_node'] / 1e6:.1f}"
            )


if __name__ == "__main__":
    main()
