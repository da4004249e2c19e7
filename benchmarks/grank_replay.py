"""G-Rank on a click log (``configs/sim/replay.toml``, or ``--scenario``): held-out scores.

Replays the log twice side by side, gossip after clicks only (``anti_entropy_interval = 0``)
and with background anti-entropy (the default, ~30 s), and prints per run RR@10, nDCG@10
and Success@10 for G-Rank and each baseline, the rows the nodes hold, and the gossip cost.
The last line is the comparable figure: G-Rank's RR@10 over the popularity baseline's.

    python benchmarks/grank_replay.py [--scenario FILE] [--log CSV]
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
    parser.add_argument("--scenario", type=Path, default=REPO / "configs/sim/replay.toml")
    parser.add_argument("--log", type=Path, default=None, help="replay this CSV instead of the scenario's")
    args = parser.parse_args()
    loaded = load_scenario(args.scenario)
    scenario = loaded.scenario
    if args.log is not None:
        scenario = msgspec.structs.replace(
            scenario, replay=msgspec.structs.replace(scenario.replay, log=str(args.log.resolve()))
        )
    last = None
    for interval in (0.0, scenario.node.ranking.anti_entropy_interval):
        ranking = msgspec.structs.replace(scenario.node.ranking, anti_entropy_interval=interval)
        run = msgspec.structs.replace(scenario, node=msgspec.structs.replace(scenario.node, ranking=ranking))
        report = run_scenario(msgspec.structs.replace(loaded, scenario=run), out_dir=None)
        m = report["metrics"]
        scores = " | ".join(
            f"{name}: " + " ".join(f"{k}={v:.3f}" for k, v in m[name].items())
            for name in ("rr10", "ndcg10", "success10")
        )
        print(
            f"anti_entropy={interval:g} nodes={report['nodes']} users={m['users']} train={m['train_clicks']} "
            f"held_out={m['held_out_scored']}/{m['held_out']} reachable={m['reachable']:.3f} "
            f"wall_s={report['wall_seconds']:.1f} | {scores} | log_coverage={m['log_coverage']:.3f} "
            f"log_coverage_min={m['log_coverage_min']:.3f} nodes_below_10pct={m['nodes_below_10pct']} "
            f"gossip_mb_per_node={m['gossip_bytes_per_node'] / 1e6:.2f}"
        )
        last = m
    print(
        f"grank_rr10={last['rr10']['grank']:.3f} popularity_rr10={last['rr10']['popularity']:.3f} "
        f"ratio={last['rr10']['grank'] / max(1e-9, last['rr10']['popularity']):.3f}"
    )


if __name__ == "__main__":
    main()
