"""Write a run's ``report.json`` and its plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

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
    if "grank_series" in report:
        written.append(_plot_grank(report, out_dir / "grank.png"))
    if "fl_series" in report:
        written.append(_plot_fl(report, out_dir / "fl.png"))
    if "semspace_series" in report:
        written.append(_plot_semspace(report, out_dir / "semspace.png"))
    return written


def _gaps(values: list) -> list[float]:
    """Missing values (None) as NaN, which matplotlib leaves as gaps."""
    return [float("nan") if v is None else v for v in values]


def _finish(fig, report: dict[str, Any], path: Path) -> Path:
    """Title a figure with the run, write it as PNG and free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(f"{report['scenario']}: {report['nodes']} nodes, seed {report['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_semspace(report: dict[str, Any], path: Path) -> Path:
    """PSNR and SSIM of the cloud model per round, and satellites trained per round, per scheme."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for scheme, series in report["semspace_series"].items():
        rounds = range(1, len(series["psnr"]) + 1)
        axes[0].plot(rounds, _gaps(series["psnr"]), label=scheme)
        axes[1].plot(rounds, _gaps(series["ssim"]), label=scheme)
        axes[2].plot(rounds, series["satellites"], label=scheme)
    for ax, title in zip(axes, ("PSNR (dB)", "SSIM", "satellites trained per round")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
    axes[0].legend(fontsize=8)
    return _finish(fig, report, path)


def _plot_fl(report: dict[str, Any], path: Path) -> Path:
    """Mean client validation and test accuracy per round, one line per strategy."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in zip(axes, ("val_acc", "test_acc"), ("validation", "test")):
        for strategy, series in report["fl_series"].items():
            values = _gaps(series[key])
            ax.plot(range(1, len(values) + 1), values, label=strategy)
        ax.set_title(f"mean client {title} accuracy", fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylim(0, 1.0)
    axes[0].legend(fontsize=8)
    return _finish(fig, report, path)


def _plot_grank(report: dict[str, Any], path: Path) -> Path:
    """One panel per metric, one line per method, over the queries issued (as the paper's)."""
    import matplotlib.pyplot as plt

    series = report["grank_series"]
    panels = [("positional_distance", "positional distance (0 = global click ranking)"),
              ("top_item_rate", "results holding the most clicked item"),
              ("mrr", "MRR of the most popular item"), ("ndcg10", "nDCG@10")]
    attacked = "attack_success" in series
    if attacked:
        panels.insert(2, ("attack_success", "honest results topped by the attackers' item"))
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True)
    for ax in axes.flat[len(panels) + 1:]:
        ax.set_visible(False)
    for ax, (metric, title) in zip(axes.flat, panels):
        for method, values in series[metric].items():
            ax.plot(series["queries"], values, label=method, linewidth=2 if method == "grank" else 1)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1.05)
    log = axes.flat[len(panels)]  # the gossiped log itself, as the paper plots it
    log.plot(series["queries"], series["log_distance"], color="black", label="the paper's distance (left)")
    log.set_title("node's log vs all clicks: paper's distance, share held", fontsize=10)
    held = log.twinx()
    held.plot(series["queries"], series["log_coverage"], color="tab:green", linestyle="--", label="rows held (right)")
    held.set_ylim(0, 1.05)
    log.legend(handles=log.get_lines() + held.get_lines(), fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("queries")
    axes[0][0].legend(fontsize=8)
    return _finish(fig, report, path)


def _plot_membership(report: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    ts = report["timeseries"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(ts["t"], ts["coverage"], label="coverage (live nodes in some view)")
    top.plot(ts["t"], ts["live_entry_fraction"], label="live share of view entries")
    top.plot(ts["t"], ts["largest_component"], label="largest connected part", linestyle="--")
    top.plot(ts["t"], _gaps(ts["shuffle_success"]),
             label="shuffles answered (per interval)", linestyle=":")
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
