"""The weighted sum of model states every aggregation here reduces to.

FED-PUB's personalised and global models, SemSpaceFL's gateway and cloud steps, flat FedAvg
and the LoRA merges (exact update, averaged A and B, FFA's B) are all ``weighted_sum`` of
per-client states. OFA weight sharing is the one exception: its weights differ per entry
(who trained what), so ``weight_sharing.aggregate`` keeps its own masked mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def weighted_sum(states: Sequence[Mapping[str, Any]], weights: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """sum_i weights[i] * states[i], key by key (numpy arrays or torch tensors).

    Weights are used as given: pass normalised ones for a weighted mean. Each weight is a
    Python float, so a float32 state stays float32; numpy results are cast back to the
    first state's dtype. A zero weight skips its state, so a NaN in a state nobody counts
    cannot leak in. The states must share keys and shapes.
    """
    if len(states) != len(weights) or not states:
        raise ValueError(f"need one weight per state and at least one state ({len(weights)} for {len(states)})")
    used = [(float(w), s) for w, s in zip(weights, states) if float(w) != 0.0]
    return {k: _like(sum(w * s[k] for w, s in used) if used else 0.0 * v, v) for k, v in states[0].items()}


def _like(value: Any, first: Any) -> Any:
    return np.asarray(value, dtype=first.dtype) if isinstance(first, np.ndarray) else value
