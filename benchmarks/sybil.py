"""Eclipse attack on peer sampling, in the simulator (same node code): issue 21's target.

For each Sybil share (``--fractions``) and placement (``--machines``: 1 = every Sybil key
on one machine, 0 = a botnet, each Sybil on a network of its own), runs the scenario twice
side by side: with the samplers (the default) and with ``samplers = 0`` (the plain Cyclon
view, the baseline). Sybils shuffle as hard as they can (``sim.sybils``). One line each:

    fraction machines samplers  view_share ratio peak_ratio max_node eclipsed cyclon_share [rr10 distance]

``view_share``: the Sybil share of honest views (what services draw from) over the run's
second half; ``ratio``: that over the Sybil share of the population (target <= 1.5);
``peak_ratio``: the worst mean share at any sample after the attack starts, over the
population share; ``max_node``: the highest share any honest node had then; ``eclipsed``:
the most honest nodes with only Sybils in view at once (target 0). With ``--scenario
configs/sim/grank-eclipse.toml`` the honest nodes also run G-Rank (the Sybils withhold
their rows): ``rr10`` and ``distance`` are G-Rank's final RR@10 and positional distance
(0: every node ranks as the whole swarm's clicks do); ``--fractions 0,0.3`` adds the run
without Sybils. The last line is the one figure: the worst ratio with samplers, and without.

    python benchmarks/sybil.py [--fractions 0.1,0.2,0.3] [--machines 1,0] [--scenario S]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent


def run(loaded, fraction: float, machines: int, samplers: int) -> dict:
    scenario = loaded.scenario
    scenario = msgspec.structs.replace(
        scenario,
        sybils=msgspec.structs.replace(scenario.sybils, fraction=fraction, machines=machines),
        node=msgspec.structs.replace(
            scenario.node, membership=msgspec.structs.replace(scenario.node.membership, samplers=samplers)
        ),
    )
    report = run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)
    m = report["metrics"]
    grank = {"rr10": m.get("rr10", {}).get("grank"), "distance": m.get("positional_distance", {}).get("grank")}
    if "sybil_population_share" not in m:  # no Sybils: the reference run
        return {"share": 0.0, "ratio": 0.0, "peak_ratio": 0.0, "max_node": 0.0, "eclipsed": 0, "cyclon": 0.0, **grank}
    population = m["sybil_population_share"]
    after = [r for r in report["sybil_series"] if r["t"] > scenario.sybils.start]
    return {
        "share": m["sybil_view_share"],
        "ratio": m["sybil_view_share_ratio"],
        "peak_ratio": max(r["view_share_mean"] for r in after) / population,
        "max_node": max(r["view_share_max"] for r in after),
        "eclipsed": max(int(r["eclipsed"]) for r in after),
        "cyclon": m["sybil_cyclon_share"],
        **grank,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=REPO / "configs/sim/sybil.toml")
    parser.add_argument("--fractions", default="0.1,0.2,0.3")
    parser.add_argument("--machines", default="1,0", help="Sybil machines per run: 1 = one machine, 0 = a botnet")
    args = parser.parse_args()
    loaded = load_scenario(args.scenario)
    slots = loaded.scenario.node.membership.samplers or 20
    worst = {"on": 0.0, "off": 0.0}
    print("fraction machines samplers view_share ratio peak_ratio max_node eclipsed cyclon_share [rr10 distance]")
    for machines in (int(x) for x in args.machines.split(",")):
        for fraction in (float(x) for x in args.fractions.split(",")):
            for label, samplers in (("on", slots), ("off", 0))[: 1 if fraction == 0 else 2]:
                r = run(loaded, fraction, machines, samplers)
                worst[label] = max(worst[label], r["ratio"])
                rr10 = "-" if r["rr10"] is None else f"{r['rr10']:.3f} {r['distance']:.3f}"
                print(
                    f"{fraction:.1f} {machines} {label:>3} {r['share']:.3f} {r['ratio']:.2f} {r['peak_ratio']:.2f} "
                    f"{r['max_node']:.2f} {r['eclipsed']} {r['cyclon']:.3f} {rr10}",
                    flush=True,
                )
    print(f"worst view_share ratio (target <= 1.5): samplers {worst['on']:.2f}, plain Cyclon {worst['off']:.2f}")


if __name__ == "__main__":
    main()
