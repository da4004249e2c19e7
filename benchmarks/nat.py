"""Reachability in the simulator (same node code): a swarm with private nodes beside the same
swarm with every node public, one line each (issue 22's simulator targets).

Each scenario runs twice with the same seed: as written (``[network] private_share``, NAT
kind, hole-punch rate, relay limits; see ``sim.nat_model``) and with ``private_share = 0``
(the baseline). Printed per run:

    scenario private coverage gossip log_coverage fl_rounds relay_kb_per_public upgraded unreachable over_limit

``coverage``: the share of live nodes in some live node's view at the end (target 1.0);
``gossip``: the share of live peers each node heard presence from (within 1% of the
baseline); ``log_coverage``: G-Rank's share of all click rows the evaluated nodes hold
(within 1%; only for a G-Rank scenario); ``fl_rounds``: federated rounds that completed, of
those run (every one; only for a federated scenario); ``relay_kb_per_public``: KiB relayed
per public node; ``upgraded``: the share of private pairs whose hole punch succeeded;
``unreachable`` / ``over_limit``: requests that found none of the peer's relays online, or
were over a circuit's byte limit.

    python benchmarks/nat.py [--scenario configs/sim/nat.toml ...] [--nodes N] [--private 0.7]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgspec

from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent


def run(loaded, private: float) -> dict:
    scenario = loaded.scenario
    scenario = msgspec.structs.replace(
        scenario, network=msgspec.structs.replace(scenario.network, private_share=private)
    )
    started = time.perf_counter()
    report = run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)
    m = report["metrics"]
    nat = m.get("nat", {})
    fl_rounds = None
    if isinstance(m.get("rounds_ok"), dict):  # a federated scenario: rounds ok over rounds run
        spec = scenario.workload[1]
        fl_rounds = f"{sum(m['rounds_ok'].values())}/{spec.rounds * len(spec.strategies)}"
    return {
        "coverage": m["membership"].get("coverage"),
        "gossip": m["membership"].get("gossip_coverage"),
        "log_coverage": m.get("log_coverage"),
        "fl_rounds": fl_rounds,
        "relay_kb_per_public": round(nat.get("relay_bytes_per_public_node", 0) / 1024, 1),
        "upgraded": nat.get("private_pairs_upgraded_share"),
        "unreachable": nat.get("requests_unreachable", 0),
        "over_limit": nat.get("requests_over_circuit_limit", 0),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, nargs="+", default=[REPO / "configs/sim/nat.toml"])
    parser.add_argument("--nodes", type=int, help="override the scenario's node count")
    parser.add_argument("--private", type=float, help="override the scenario's private share")
    args = parser.parse_args()
    columns = ("coverage", "gossip", "log_coverage", "fl_rounds", "relay_kb_per_public", "upgraded")
    print(
        f"{'scenario':12} {'private':>7} " + " ".join(f"{c:>19}" for c in columns) + "  unreachable over_limit wall_s"
    )
    for path in args.scenario:
        loaded = load_scenario(path, nodes=args.nodes)
        share = args.private if args.private is not None else loaded.scenario.network.private_share
        for private in (0.0, share):
            r = run(loaded, private)
            cells = " ".join(f"{'-' if r[c] is None else r[c]!s:>19}" for c in columns)
            print(
                f"{loaded.scenario.name:12} {private:>7.2f} {cells}  {r['unreachable']:>11} {r['over_limit']:>10} "
                f"{r['wall_s']:>6}",
                flush=True,
            )


if __name__ == "__main__":
    main()
