"""How far the simulator scales: N nodes of membership gossip for 10 virtual minutes.

Each size runs in a fresh process (so peak RSS is that run's alone) against a baseline
process that imports the same modules and builds nothing; RSS per node is the difference
divided by N. Prints one line per size, and last the 1,000-node figures against the target
(60 s wall, 2 MB per node on 2 cores).

    python benchmarks/sim_scale.py [--sizes 100 300 1000] [--duration 600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from edgeswarm.sim.scenario import load_scenario
from edgeswarm.sim.runner import run_scenario
import msgspec
nodes, duration = int(sys.argv[1]), float(sys.argv[2])
if nodes == 0:
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})); sys.exit()
loaded = load_scenario(Path(sys.argv[3]), nodes=nodes)
loaded = msgspec.structs.replace(loaded, scenario=msgspec.structs.replace(loaded.scenario, duration=duration))
report = run_scenario(loaded, out_dir=None)
print(json.dumps({
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "wall_seconds": report["wall_seconds"],
    "messages": sum(report["metrics"]["counters"]["msgs_out"].values()),
    "strongly_connected": report["metrics"]["membership"]["strongly_connected"],
}))
"""


def child(nodes: int, duration: float, scenario: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(nodes), str(duration), str(scenario)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--duration", type=float, default=600.0, help="virtual seconds (default 600)")
    parser.add_argument("--scenario", type=Path, default=REPO / "configs/sim/scale.toml")
    args = parser.parse_args()

    base = child(0, args.duration, args.scenario)["rss_mb"]
    print(f"baseline process (imports only): {base:.1f} MB RSS")
    print(
        f"{'nodes':>6} {'wall s':>8} {'virt s/wall s':>14} {'peak RSS MB':>12} {'MB/node':>8} {'msgs':>9} {'connected':>9}"
    )
    last = None
    for n in args.sizes:
        r = child(n, args.duration, args.scenario)
        per_node = (r["rss_mb"] - base) / n
        speed = args.duration / r["wall_seconds"]
        print(
            f"{n:>6} {r['wall_seconds']:>8.1f} {speed:>14.1f} {r['rss_mb']:>12.1f} {per_node:>8.3f} "
            f"{r['messages']:>9} {r['strongly_connected']!s:>9}"
        )
        last = (n, r["wall_seconds"], per_node, speed)
    n, wall, per_node, speed = last
    print(
        f"nodes={n} virtual_s={args.duration:g} wall_s={wall:.1f} (target<60) "
        f"mb_per_node={per_node:.3f} (target<2) virtual_per_wall={speed:.1f}"
    )


if __name__ == "__main__":
    main()
