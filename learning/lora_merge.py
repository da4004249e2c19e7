"""Merging LoRA deltas from several peers, and choosing which peers to merge.

The target of every merge is the weighted sum of updates sum_i p_i s_i B_i A_i (s = alpha/r).
- ``fedavg_ab``: average A's and B's separately: cheap, same rank, *inexact*
  (the product of averages is not the average of products; ``merge_error`` says how far);
- ``ffa``: FFA-LoRA, every peer shares the same frozen A (from a common seed) and trains B:
  averaging B is exact;
- ``flora``: FLoRA stacking, A's stacked by rows and p_i s_i B_i by columns: exact for any
  mix of ranks, at rank sum r_i; fold it into the base (``apply``) and restart adapters.
Weights come from data sizes, trust or similarity scores (``normalise``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .lora import Delta, DeltaError
from .weighted import weighted_sum


def normalise(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError("merge weights must be non-negative with a positive sum")
    return [float(w) / total for w in weights]


def _check(deltas: Sequence[Delta], weights: Sequence[float]) -> list[str]:
    if not deltas or len(deltas) != len(weights):
        raise DeltaError("need one weight per delta and at least one delta")
    modules = deltas[0].modules
    if any(d.modules != modules for d in deltas):
        raise DeltaError("deltas adapt different modules")
    if len({(d.base_id, d.base_version) for d in deltas}) != 1:
        raise DeltaError("deltas come from different base models")
    return modules


def exact_update(deltas: Sequence[Delta], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i p_i s_i B_i A_i per module (float64): what an exact merge must equal."""
    modules = _check(deltas, weights)
    return weighted_sum([{m: d.update(m) for m in modules} for d in deltas], weights)


def fedavg_ab(deltas: Sequence[Delta], weights: Sequence[float]) -> Delta:
    modules = _check(deltas, weights)
    if len({(d.rank, d.alpha) for d in deltas}) != 1:
        raise DeltaError("averaging A and B needs one rank and alpha")
    first = deltas[0]
    a = weighted_sum([{m: d.a[m] for m in modules} for d in deltas], weights)
    b = weighted_sum([{m: d.b[m] for m in modules} for d in deltas], weights)
    return Delta(first.rank, first.alpha, a, b, first.base_id, first.base_version)


def ffa(deltas: Sequence[Delta], weights: Sequence[float], *, atol: float = 1e-6) -> Delta:
    modules = _check(deltas, weights)
    first = deltas[0]
    for d in deltas[1:]:
        if (
            d.rank != first.rank
            or d.alpha != first.alpha
            or any(not torch.allclose(d.a[m], first.a[m], atol=atol) for m in modules)
        ):
            raise DeltaError("FFA-LoRA needs the same frozen A (same seed, rank and alpha) in every delta")
    b = weighted_sum([{m: d.b[m] for m in modules} for d in deltas], weights)
    return Delta(first.rank, first.alpha, dict(first.a), b, first.base_id, first.base_version)


def flora(deltas: Sequence[Delta], weights: Sequence[float]) -> Delta:
    modules = _check(deltas, weights)
    rank = sum(d.rank for d in deltas)
    a = {m: torch.cat([d.a[m] for d in deltas], dim=0) for m in modules}
    b = {m: torch.cat([p * d.scale * d.b[m] for p, d in zip(weights, deltas)], dim=1) for m in modules}
    first = deltas[0]
    return Delta(rank, float(rank), a, b, first.base_id, first.base_version)  # alpha = rank: scale 1


def merge_error(merged: Delta, deltas: Sequence[Delta], weights: Sequence[float]) -> float:
    """Largest relative Frobenius error of ``merged`` against the exact weighted update."""
    target = exact_update(deltas, weights)
    return max(
        float(torch.linalg.norm(merged.update(m) - t) / max(float(torch.linalg.norm(t)), 1e-12))
        for m, t in target.items()
    )


MERGES: dict[str, Callable[[Sequence[Delta], Sequence[float]], Delta]] = {
    "flora": flora,
    "ffa": ffa,
    "fedavg": fedavg_ab,
}


def select_by_validation(
    candidates: Sequence[Delta], score: Callable[[Delta], float], *, threshold: float, top_k: int = 5
) -> list[tuple[Delta, float]]:
    """The merge policy: candidates scoring at least ``threshold`` (e.g. the validation gain
    of merging them with ours, on local data), best first, at most ``top_k``: never blindly all."""
    scored = [(d, score(d)) for d in candidates]
    kept = [(d, s) for d, s in scored if s >= threshold]
    return sorted(kept, key=lambda pair: -pair[1])[:top_k]
