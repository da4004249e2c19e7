"""``edgeswarm sim ...``: run simulations from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeswarm.node.user_errors import UsageProblem, user_errors

from .report import write_report
from .runner import run_scenario
from .scenario import load_scenario
from .workloads import WORKLOADS

app = typer.Typer(help="Simulate hundreds of peers on a virtual network in virtual time.", no_args_is_help=True)


@app.command("run")
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML, e.g. configs/sim/smoke.toml.", dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Directory for report.json, plots and node stores.")],
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    nodes: Annotated[int | None, typer.Option(help="Override the scenario's node count.", min=1)] = None,
) -> None:
    """Run SCENARIO and write OUT/report.json plus PNG plots."""
    console = Console(stderr=True)
    with user_errors():
        if (out / "report.json").exists() or (out / "nodes").exists():
            raise UsageProblem(f"'{out}' already holds a run; choose another --out")
        loaded = load_scenario(scenario, seed=seed, nodes=nodes)
        spec = loaded.scenario
        out.mkdir(parents=True, exist_ok=True)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            unit = "s" if spec.transport == "libp2p" else "virtual s"
            task = progress.add_task(f"{spec.name}: {spec.nodes} nodes ({unit})", total=spec.duration)
            update = lambda t: progress.update(task, completed=t)
            if spec.transport == "libp2p":
                from .libp2p_runner import run_libp2p_scenario

                report = run_libp2p_scenario(loaded, out_dir=out, progress=update)
            else:
                report = run_scenario(loaded, out_dir=out, progress=update)
            # a workload that finishes before ``duration`` ends the run: the bar ends full there
            ended = report.get("virtual_seconds") or spec.duration
            progress.update(task, total=ended, completed=ended)
        written = write_report(report, out)
    Console().print(summary_table(report))
    for path in written:
        console.print(f"wrote {path}")


def summary_table(report: dict[str, Any]) -> Table:
    metrics = report["metrics"]
    counters = metrics["counters"]
    overlay = metrics["membership"]
    table = Table(title=f"{report['scenario']} (seed {report['seed']})", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("nodes", report["nodes"]),
        ("virtual seconds", f"{report['virtual_seconds']:g}"),
        ("wall seconds", f"{report['wall_seconds']:.2f}"),
        ("virtual s per wall s", report["wall_virtual_per_wall_second"]),
        ("messages sent", sum(counters.get("msgs_out", {}).values())),
        ("bytes on the wire", metrics["network"].get("bytes_sent", "-")),
        ("envelopes rejected", sum(counters.get("rejects", {}).values())),
        ("crashes / sessions", f"{metrics['churn']['crashes']} / {metrics['churn']['sessions']}"),
        ("overlay coverage", overlay.get("coverage")),
        ("live share of views", overlay.get("live_entry_fraction")),
        ("strongly connected", overlay.get("strongly_connected")),
    ]
    for kind in WORKLOADS.values():
        if f"{kind.name}_series" in report:
            rows += kind.summary(metrics)
    for name, value in rows:
        table.add_row(name, str(value))
    return table
