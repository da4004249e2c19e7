"""numpy states <-> Flower ArrayRecords, shared by our strategies."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord


def to_record(state: dict[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord of ``state`` (contiguous copies, as Flower's serde needs)."""
    return ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
