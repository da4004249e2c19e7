"""What a federated run looks like to its user: the host's request and the run's record.

``fl status`` shows ``RunRecord``s; ``edgeswarm fl host`` sends a ``RoundSpec``.
"""

from __future__ import annotations

import msgspec
from flwr.app import MetricRecord

MAX_RUNS = 256  # run records `fl status` shows


class RoundSpec(msgspec.Struct, frozen=True):
    """What a host asks for (``edgeswarm fl host``)."""

    task: str
    strategy: str = "fedavg"
    rounds: int = 3
    min_clients: int = 2
    reply_timeout: float | None = None  # default: the node's config
    join_window: float | None = None
    train_config: dict[str, str | int | float | bool] = {}
    strategy_options: dict[str, str | int | float | bool] = {}
    requirements: dict[str, str] = {}  # announced beside the data identity, for joiners' policies


class RoundMetrics(msgspec.Struct):
    round: int
    status: str  # "ok" or "failed: <why>"
    replies: int
    failures: int
    train: dict[str, float]
    evaluate: dict[str, float]
    clients: dict[str, dict[str, float]]  # peer -> its own evaluate metrics (personal accuracy)
    seconds: float = 0.0  # train + evaluate, on the host's clock
    clients_train: dict[str, dict[str, float]] = {}  # peer -> its train reply metrics
    central: dict[str, float] = {}  # the host's own evaluation of the aggregated model
    rejected: dict[str, str] = {}  # peer -> why its reply was dropped before aggregation
    capped: dict[str, float] = {}  # peer -> the weight it claimed, where it was cut to the cap


class RunRecord(msgspec.Struct):
    """A run this node hosts or joined, as ``fl status`` shows it."""

    round_id: str
    role: str  # "host" or "client"
    task: str
    strategy: str
    rounds: int
    host: str
    state: str  # announced, running, done, failed, joined, training
    participants: list[str] = []
    history: list[RoundMetrics] = []
    detail: str = ""


def bound(table: dict, size: int) -> None:
    """Drop the oldest entries of an insertion-ordered dict beyond ``size``."""
    while len(table) > size:
        table.pop(next(iter(table)))


def floats(record: MetricRecord | None) -> dict[str, float]:
    """A metric record's numbers as floats (what run records keep)."""
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float)}
