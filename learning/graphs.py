"""Graphs for subgraph federated learning: loading, splitting and METIS partitioning.

FED-PUB's setup (Baek et al., ICML 2023): the largest connected component of a citation
graph, a random 20/40/40 train/validation/test node split, then METIS parts as clients.
Non-overlapping: M parts, edges across parts dropped. Overlapping: M/5 METIS communities,
each giving 5 clients that hold a random half of the community's nodes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Graph:
    """A node-classification graph with its split; ``edge_index`` is undirected (both ways)."""

    x: torch.Tensor  # float [n, features]
    edge_index: torch.Tensor  # long [2, e]
    y: torch.Tensor  # long [n]
    train: torch.Tensor  # bool [n]
    val: torch.Tensor
    test: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    def subgraph(self, nodes: np.ndarray) -> Graph:
        """The induced subgraph on ``nodes``, relabelled 0..len-1 (edges leaving it dropped)."""
        keep = torch.as_tensor(np.sort(nodes), dtype=torch.long)
        relabel = torch.full((self.num_nodes,), -1, dtype=torch.long)
        relabel[keep] = torch.arange(len(keep))
        src, dst = relabel[self.edge_index[0]], relabel[self.edge_index[1]]
        inside = (src >= 0) & (dst >= 0)
        return Graph(
            x=self.x[keep],
            edge_index=torch.stack([src[inside], dst[inside]]),
            y=self.y[keep],
            train=self.train[keep],
            val=self.val[keep],
            test=self.test[keep],
        )


PLANETOID = ("Cora", "CiteSeer", "PubMed")


def planetoid_source(source: str) -> tuple[Path, str]:
    """(root, dataset name) of ``planetoid:<root>[:<name>]``.

    The name is what follows the last ':' when that is a Planetoid name (Cora, CiteSeer,
    PubMed, any case); otherwise the whole rest is the root and the name is Cora. So a root
    may itself hold ':' (``planetoid:/data/run:2/Planetoid:PubMed``).
    """
    rest = source.removeprefix("planetoid:")
    root, _, name = rest.rpartition(":")
    known = {n.lower(): n for n in PLANETOID}
    if root and name.lower() in known:
        return Path(root), known[name.lower()]
    return Path(rest), "Cora"


def load_planetoid(root: Path, name: str = "Cora") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, undirected edges and labels from the standard Planetoid raw files.

    ``root/name/raw/ind.<name>.*`` are read through PyG from a temporary copy, since PyG
    writes processed files beside the raw ones and ``root`` may be read-only.
    """
    from torch_geometric.datasets import Planetoid

    raw = Path(root) / name / "raw"
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: no such directory (expected the Planetoid raw files ind.{name.lower()}.*)")
    with tempfile.TemporaryDirectory(prefix="edgeswarm-planetoid-") as tmp:
        shutil.copytree(raw, Path(tmp) / name / "raw")
        data = Planetoid(tmp, name)[0]
    return data.x, data.edge_index, data.y


def largest_component(x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor):
    """Restrict a graph to its largest connected component (as FED-PUB does)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = x.shape[0]
    adjacency = coo_matrix((np.ones(edge_index.shape[1]), edge_index.numpy()), shape=(n, n))
    _, labels = connected_components(adjacency, directed=False)
    biggest = np.bincount(labels).argmax()
    keep = torch.as_tensor(np.flatnonzero(labels == biggest))
    relabel = torch.full((n,), -1, dtype=torch.long)
    relabel[keep] = torch.arange(len(keep))
    src, dst = relabel[edge_index[0]], relabel[edge_index[1]]
    inside = (src >= 0) & (dst >= 0)
    return x[keep], torch.stack([src[inside], dst[inside]]), y[keep]


def split_nodes(
    x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor, seed: int, train: float = 0.2, val: float = 0.4
) -> Graph:
    """Random train/validation/test node masks (paper: 20/40/40)."""
    n = y.shape[0]
    order = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    cut_train, cut_val = round(train * n), round((train + val) * n)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][order[:cut_train]] = True
    masks[1][order[cut_train:cut_val]] = True
    masks[2][order[cut_val:]] = True
    return Graph(x=x, edge_index=edge_index, y=y, train=masks[0], val=masks[1], test=masks[2])


def metis_parts(graph: Graph, parts: int) -> np.ndarray:
    """METIS membership (part id per node) of the undirected graph, via pymetis."""
    import pymetis

    if parts < 1:
        raise ValueError(f"parts must be >= 1, not {parts}")
    if parts == 1:
        return np.zeros(graph.num_nodes, dtype=np.int64)
    neighbours: list[list[int]] = [[] for _ in range(graph.num_nodes)]
    for s, d in graph.edge_index.t().tolist():
        if s != d:
            neighbours[s].append(d)
    _, membership = pymetis.part_graph(parts, adjacency=[sorted(set(n)) for n in neighbours])
    return np.asarray(membership, dtype=np.int64)


def partition(graph: Graph, clients: int, mode: str = "disjoint", seed: int = 1234) -> list[Graph]:
    """Client subgraphs: ``disjoint`` (METIS parts) or ``overlapping`` (5 random halves per community)."""
    if mode == "disjoint":
        membership = metis_parts(graph, clients)
        return [graph.subgraph(np.flatnonzero(membership == c)) for c in range(clients)]
    if mode == "overlapping":
        if clients % 5:
            raise ValueError(f"overlapping partitions need a multiple of 5 clients, not {clients}")
        membership = metis_parts(graph, clients // 5)
        rng = np.random.default_rng(seed)
        subgraphs = []
        for community in range(clients // 5):
            nodes = np.flatnonzero(membership == community)
            for _ in range(5):
                subgraphs.append(graph.subgraph(rng.choice(nodes, size=len(nodes) // 2, replace=False)))
        return subgraphs
    raise ValueError(f"unknown partition mode {mode!r} (disjoint or overlapping)")


def builtin_graph(seed: int = 0, nodes: int = 1200, classes: int = 6, features: int = 64) -> tuple:
    """A citation-like graph that needs no files: homophilous blocks, noisy class features.

    Stochastic block model (one block per class, mean degree about 4, 85% of edges inside
    a block) with features = a class prototype plus noise, so a GCN helps over an MLP and
    METIS parts have skewed labels, like Cora's.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=nodes)
    edges = set()
    target = 2 * nodes
    while len(edges) < target:
        a = int(rng.integers(nodes))
        same = rng.random() < 0.85
        pool = np.flatnonzero(y == y[a]) if same else np.flatnonzero(y != y[a])
        b = int(rng.choice(pool))
        if a != b:
            edges.add((min(a, b), max(a, b)))
    pairs = np.array(sorted(edges)).T
    edge_index = torch.as_tensor(np.concatenate([pairs, pairs[::-1]], axis=1), dtype=torch.long)
    prototypes = rng.normal(0, 1, size=(classes, features))
    x = prototypes[y] * 0.6 + rng.normal(0, 1, size=(nodes, features))
    return torch.as_tensor(x, dtype=torch.float32), edge_index, torch.as_tensor(y, dtype=torch.long)


def client_graphs(source: str, clients: int, mode: str = "disjoint", seed: int = 1234) -> list[Graph]:
    """The federation's client subgraphs for a dataset spec: ``builtin`` or a Planetoid dir.

    ``source`` is ``builtin`` or ``planetoid:<root>[:<name>]`` (root holds ``<name>/raw``).
    Features are row-normalised as in FED-PUB (PyG ``NormalizeFeatures``).
    """
    if source == "builtin":
        x, edge_index, y = builtin_graph()
    elif source.startswith("planetoid:"):
        x, edge_index, y = load_planetoid(*planetoid_source(source))
        x = x / x.sum(dim=1, keepdim=True).clamp(min=1)
    else:
        raise ValueError(f"unknown graph source {source!r} (builtin or planetoid:<root>[:<name>])")
    x, edge_index, y = largest_component(x, edge_index, y)
    return partition(split_nodes(x, edge_index, y, seed), clients, mode, seed)
