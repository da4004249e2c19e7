"""When churning nodes go down and come back: one seeded schedule for both runners."""

from __future__ import annotations

from typing import Literal

from .determinism import derive_rng
from .scenario import Scenario

Action = Literal["crash", "start"]


def churn_schedule(spec: Scenario) -> dict[int, list[tuple[float, Action]]]:
    """Per churning node index, its (time, action) events in order.

    A ``churn.fraction`` of the non-bootstrap nodes (a seeded sample) alternate: up for an
    exponential time of mean ``mean_up``, then down for one of mean ``mean_down``, between
    ``churn.start`` and ``churn.end``. A node is started again at the latest at ``end``; the
    last event, when its next up time passes ``end``, is a ``start`` (a no-op for a node
    that is up).
    """
    churn = spec.churn
    candidates = list(range(spec.bootstrap, spec.nodes))
    count = round(churn.fraction * len(candidates))
    schedule: dict[int, list[tuple[float, Action]]] = {}
    for index in derive_rng(spec.seed, "churn").sample(candidates, count) if count else []:
        rng = derive_rng(spec.seed, "churn", index)
        events: list[tuple[float, Action]] = []
        t = churn.start
        while True:
            t += rng.expovariate(1 / churn.mean_up)
            if t >= churn.end:
                events.append((t, "start"))
                break
            events.append((t, "crash"))
            t = min(t + rng.expovariate(1 / churn.mean_down), churn.end)
            events.append((t, "start"))
        schedule[index] = events
    return schedule
