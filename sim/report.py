"""Write a run's ``report.json`` and its plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .plots import gaps
from .workloads import WORKLOADS

log = logging.getLogger(__name__)


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``report.json`` and, when matplotlib is installed, PNG plots; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    written = [path]
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'edgeswarm[sim]'): no plots")
        return written
    matplotlib.use("Agg")
    written.append(_plot_membership(report, out_dir / "membership.png"))
    for name, kind in WORKLOADS.items():
        if f"{name}_series" in report and (plot := kind.plot(report, out_dir / f"{name}.png")) is not None:
            written.append(plot)
    return written


def _plot_membership(report: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    ts = report["timeseries"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(ts["t"], ts["coverage"], label="coverage (live nodes in some view)")
    top.plot(ts["t"], ts["live_entry_fraction"], label="live share of view entries")
    top.plot(ts["t"], ts["largest_component"], label="largest connected part", linestyle="--")
    top.plot(ts["t"], gaps(ts["shuffle_success"]), label="shuffles answered (per interval)", linestyle=":")
    for window, colour, label in _windows(report):
        for ax in (top, bottom):
            ax.axvspan(*window, color=colour, alpha=0.12, label=label if ax is top else None)
    top.set_ylim(0, 1.05)
    top.set_ylabel("fraction")
    top.set_title(f"{report['scenario']}: {report['nodes']} nodes, seed {report['seed']}")
    bottom.plot(ts["t"], ts["online"], color="tab:gray")
    bottom.set_ylabel("nodes online")
    bottom.set_xlabel("virtual time (s)")
    top.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _windows(report: dict[str, Any]) -> list[tuple[tuple[float, float], str, str]]:
    """Churn and partition periods of the run, to shade in the plots."""
    events = report.get("events", {})
    out = []
    churn = events.get("churn")
    if churn:
        out.append(((churn["start"], churn["end"]), "tab:red", "churn"))
    for i, p in enumerate(events.get("partitions", [])):
        out.append(((p["start"], p["end"]), "tab:purple", "partition" if i == 0 else None))
    return out
