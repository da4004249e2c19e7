"""Helpers every workload's plot shares (matplotlib is imported by the caller's plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gaps(values: list) -> list[float]:
    """Missing values (None) as NaN, which matplotlib leaves as gaps."""
    return [float("nan") if v is None else v for v in values]


def finish(fig, report: dict[str, Any], path: Path) -> Path:
    """Title a figure with the run, write it as PNG and free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(f"{report['scenario']}: {report['nodes']} nodes, seed {report['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
