"""Health of the membership overlay, computed from what nodes report (``Node.status``)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


def overlay_stats(views: Mapping[str, Sequence[str]]) -> dict[str, float | int | bool]:
    """Summarise the directed "u has v in its view" graph over the live nodes in ``views``.

    Returns
    -------
    dict with
        ``live_entry_fraction``: mean share of a node's view that points at live nodes;
        ``coverage``: share of live nodes present in some live node's view;
        ``strongly_connected``: every live node can reach every other through views;
        ``largest_component``: share of live nodes in the largest weakly connected part;
        ``view_size_mean``, ``view_size_min``, ``indegree_min``, ``indegree_max``, ``indegree_std``.
    """
    live = list(views)
    n = len(live)
    if n == 0:
        return {"live": 0}
    live_set = set(live)
    edges = {u: [v for v in views[u] if v in live_set and v != u] for u in live}
    indegree = dict.fromkeys(live, 0)
    for targets in edges.values():
        for v in targets:
            indegree[v] += 1
    fractions = [len(edges[u]) / len(views[u]) if views[u] else 0.0 for u in live]
    reverse: dict[str, list[str]] = {u: [] for u in live}
    for u, targets in edges.items():
        for v in targets:
            reverse[v].append(u)
    root = live[0]
    strongly = len(_reach(root, edges)) == n and len(_reach(root, reverse)) == n
    undirected = {u: edges[u] + reverse[u] for u in live}
    largest, seen = 0, set()
    for u in live:
        if u not in seen:
            part = _reach(u, undirected)
            seen |= part
            largest = max(largest, len(part))
    degrees = list(indegree.values())
    return {
        "live": n,
        "live_entry_fraction": round(statistics.fmean(fractions), 6),
        "coverage": round(sum(1 for d in degrees if d > 0) / n, 6),
        "strongly_connected": strongly,
        "largest_component": round(largest / n, 6),
        "view_size_mean": round(statistics.fmean(len(views[u]) for u in live), 6),
        "view_size_min": min(len(views[u]) for u in live),
        "indegree_min": min(degrees),
        "indegree_max": max(degrees),
        "indegree_std": round(statistics.pstdev(degrees), 6),
    }


def _reach(start: str, graph: Mapping[str, Sequence[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for v in graph[stack.pop()]:
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen
