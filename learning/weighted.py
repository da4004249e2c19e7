"""The weighted sum of model states every aggregation here reduces to."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def weighted_sum(states: Sequence[dict[str, np.ndarray]], weights: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
    """sum_i weights[i] * states[i], key by key, in the first state's dtypes.

    Weights are used as given: pass normalised ones for a weighted mean. A zero weight
    skips its state, so a NaN in a state nobody counts cannot leak in. The states must
    share keys and shapes.
    """
    if len(states) != len(weights) or not states:
        raise ValueError(f"need one weight per state and at least one state ({len(weights)} for {len(states)})")
    used = [(float(w), s) for w, s in zip(weights, states) if float(w) != 0.0]
    return {k: np.asarray(sum(w * s[k] for w, s in used), dtype=v.dtype) if used else np.zeros_like(v)
            for k, v in states[0].items()}
