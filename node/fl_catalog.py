"""Names of federated tasks and strategies, and which pairs can work: light, no torch or Flower.

The CLI builds ``--strategy`` choices and refuses impossible runs from this before it asks
the daemon; the daemon checks the same again (``fl_tasks`` maps each name to code and a
test keeps the two in step).
"""

from __future__ import annotations

import math

STRATEGIES: dict[str, str] = {
    "fedavg": "FedAvg, weighted by num-examples (McMahan et al. 2017)",
    "local": "no aggregation: each client keeps training its own model (baseline)",
    "fedprox": "FedProx, proximal term mu = 0.01 (Li et al. 2020)",
    "fedmedian": "coordinate-wise median (Yin et al. 2018)",
    "fedtrimmedavg": "coordinate-wise trimmed mean, beta = 0.2 per side (Yin et al. 2018)",
    "krum": "Krum with f = 2 assumed malicious (Blanchard et al. 2017)",
    "fedpub": "FED-PUB personalized subgraph FL (Baek et al. 2023)",
    "weightsharing": "OFA subnets of different sizes merged into one supernet",
    "weighted": "FedAvg weighted by each reply's 'weight' metric (SemSpaceFL tiers)",
    "dp-fedavg": "FedAvg with server-side fixed clipping and Gaussian noise (central DP)",
}

_ROBUST = {"fedavg", "fedprox", "fedmedian", "fedtrimmedavg", "krum", "dp-fedavg"}

TASK_STRATEGIES: dict[str, frozenset[str]] = {
    # the graph client replies with FED-PUB's embedding and keeps its own weights for "local"
    "subgraph": frozenset(_ROBUST | {"local", "fedpub"}),
    # OFA clients reply with the whole supernet and the mask of what they trained
    "ofa": frozenset(_ROBUST | {"weightsharing"}),
    # JSCC clients reply with a "weight" metric for the SemSpaceFL tiers
    "jscc": frozenset(_ROBUST | {"weighted"}),
    "jscc-gateway": frozenset(_ROBUST | {"weighted"}),
}

TRIM_BETA = 0.2  # fedtrimmedavg's share cut from each side
KRUM_MALICIOUS = 2  # krum's f


def min_clients_for(strategy: str) -> int:
    """The fewest replies a round needs for ``strategy`` to do what its name says.

    Trimmed mean cuts floor(beta * n) from each side, which is nothing below 1 / beta
    clients; Krum scores each update by its n - f - 2 nearest neighbours, so n > f + 2.
    """
    if strategy == "fedtrimmedavg":
        return math.ceil(1 / TRIM_BETA)
    if strategy == "krum":
        return KRUM_MALICIOUS + 3
    return 1


def check_run(task: str, strategy: str, min_clients: int) -> str | None:
    """Why a run of ``strategy`` on ``task`` with ``min_clients`` cannot work, or None."""
    if task not in TASK_STRATEGIES:
        return f"unknown task {task!r} (one of {', '.join(TASK_STRATEGIES)})"
    if strategy not in STRATEGIES:
        return f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})"
    if strategy not in TASK_STRATEGIES[task]:
        return f"strategy {strategy!r} cannot train task {task!r} (it can: {', '.join(sorted(TASK_STRATEGIES[task]))})"
    needed = min_clients_for(strategy)
    if min_clients < needed:
        return (
            f"{strategy} with {min_clients} clients would be plain averaging (it needs --min-clients {needed} or more)"
        )
    return None
