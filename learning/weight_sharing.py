"""Aggregating updates of *different* subnets back into the shared supernet weights.

Each client trains the subnet its device can afford, inside the supernet's tensors (kernel
centres, leading channels, leading blocks). A client reports its whole supernet state and
the entries it trained (``touched``: entries that changed; an entry outside its subnet gets
no gradient and stays bit-identical under SGD or Adam without weight decay). Every entry of
the new supernet is the sample-weighted mean over the clients that trained it; an entry no
client trained keeps its value. With every client training the full network this is FedAvg.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def touched(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean mask per tensor: the entries local training changed."""
    if set(before) != set(after):
        raise ValueError("states have different tensors")
    return {k: np.asarray(np.asarray(after[k]) != np.asarray(before[k])) for k in before}


def aggregate(
    current: dict[str, np.ndarray], updates: Sequence[tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]]
) -> dict[str, np.ndarray]:
    """New supernet state from ``(state, mask, weight)`` per client (see the module docstring)."""
    result = {}
    for key, value in current.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):  # counters such as BatchNorm's num_batches_tracked
            result[key] = value
            continue
        total = np.zeros(value.shape, dtype=np.float64)
        weight = np.zeros(value.shape, dtype=np.float64)
        for state, mask, w in updates:
            m = np.asarray(mask[key], dtype=bool)
            if np.asarray(state[key]).shape != value.shape or m.shape != value.shape:
                raise ValueError(f"tensor {key!r} does not match the supernet's shape {value.shape}")
            total += w * np.where(m, state[key], 0.0)
            weight += w * m
        covered = weight > 0
        merged = value.astype(np.float64).copy()
        merged[covered] = total[covered] / weight[covered]
        result[key] = merged.astype(value.dtype)
    return result
