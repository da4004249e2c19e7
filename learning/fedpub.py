"""FED-PUB (Baek et al., "Personalized Subgraph Federated Learning", ICML 2023).

Each client trains a masked GCN: every weight matrix is multiplied elementwise by a
real-valued mask that stays on the client (biases are not masked). The server compares
clients by *functional embeddings* (the mean, over a shared random proxy graph, of the
second GCN layer's output in eval mode) and sends each client its own model
theta_i = sum_j alpha_ij theta_j, alpha_ij = softmax_j(tau * cos(h_i, h_j)).

The official code computes its L1 mask sparsity and proximal terms on detached tensors
(``state_dict()`` values), so they change the loss value and no gradient;
``regularise="official"`` keeps that behaviour, ``"grad"`` makes both terms train.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MASK_KEY = ".mask"  # state-dict keys holding masks contain this; they never leave the client


class MaskedLinear(nn.Module):
    """y = x (W * M)^T + b with a learnable real-valued mask M (initially ones) on W only."""

    def __init__(self, inputs: int, outputs: int, bias: bool = True, masked: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(outputs, inputs))
        self.mask = nn.Parameter(torch.ones(outputs, inputs)) if masked else None
        self.bias = nn.Parameter(torch.zeros(outputs)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)  # glorot, as PyG's GCNConv
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.mask if self.mask is not None else self.weight
        return F.linear(x, weight, self.bias)


class GCN(nn.Module):
    """Two GCNConv layers (PyG) and a linear classifier; masked weights when ``masked``."""

    def __init__(self, features: int, classes: int, hidden: int = 128, masked: bool = True, dropout: float = 0.5):
        from torch_geometric.nn import GCNConv

        super().__init__()
        self.conv1 = GCNConv(features, hidden)
        self.conv2 = GCNConv(hidden, hidden)
        # GCNConv applies self.lin before propagating: swap in the masked weight
        self.conv1.lin = MaskedLinear(features, hidden, bias=False, masked=masked)
        self.conv2.lin = MaskedLinear(hidden, hidden, bias=False, masked=masked)
        self.classifier = MaskedLinear(hidden, classes, masked=masked)
        self.dropout = dropout

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The second GCN layer's output (before its activation)."""
        h = F.relu(self.conv1(x, edge_index))
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.embed(x, edge_index)), self.dropout, self.training)
        return self.classifier(h)


def shared_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a client shares: everything but its masks."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if MASK_KEY not in k}


def mask_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if MASK_KEY in k}


def load_shared(model: nn.Module, shared: dict[str, torch.Tensor]) -> None:
    """Load received shared weights, keeping this client's masks; refuses missing or extra keys."""
    expected = {k for k in model.state_dict() if MASK_KEY not in k}
    if set(shared) != expected:
        raise ValueError(
            f"shared weights do not fit the model: missing {sorted(expected - set(shared))[:3]}, "
            f"unexpected {sorted(set(shared) - expected)[:3]}"
        )
    model.load_state_dict(shared, strict=False)


@dataclass(frozen=True)
class ProxyGraph:
    x: torch.Tensor
    edge_index: torch.Tensor


@lru_cache(maxsize=8)
def proxy_graph(
    features: int, seed: int = 1234, blocks: int = 5, block_nodes: int = 100, p_in: float = 0.1
) -> ProxyGraph:
    """The random graph every client embeds: ``blocks`` x ``block_nodes`` nodes, edges only
    inside a block with probability ``p_in``, N(0, 1) features; a fixed seed makes it shared."""
    rng = np.random.default_rng(seed)
    edges = []
    for b in range(blocks):
        base = b * block_nodes
        upper = np.triu(rng.random((block_nodes, block_nodes)) < p_in, k=1)
        src, dst = np.nonzero(upper)
        edges.append(np.stack([src + base, dst + base]))
    pairs = np.concatenate(edges, axis=1)
    edge_index = torch.as_tensor(np.concatenate([pairs, pairs[::-1]], axis=1), dtype=torch.long)
    x = torch.as_tensor(rng.normal(0, 1, size=(blocks * block_nodes, features)), dtype=torch.float32)
    return ProxyGraph(x, edge_index)


@torch.no_grad()
def functional_embedding(model: GCN, proxy: ProxyGraph) -> np.ndarray:
    """Mean over proxy nodes of the second GCN layer's output, in eval mode."""
    was_training = model.training
    model.eval()
    h = model.embed(proxy.x, proxy.edge_index).mean(dim=0)
    model.train(was_training)
    return h.numpy().astype(np.float64)


def similarity_weights(embeddings: np.ndarray, tau: float) -> np.ndarray:
    """alpha[i, j] = softmax_j(tau * cos(h_i, h_j)); rows sum to 1."""
    h = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(h, axis=1, keepdims=True)
    unit = h / np.where(norms == 0, 1, norms)
    logits = tau * unit @ unit.T
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LocalTraining:
    """Client-side hyperparameters (paper / official defaults for Cora)."""

    lr: float = 0.01
    weight_decay: float = 1e-6
    epochs: int = 1
    l1: float = 1e-3  # mask sparsity
    proximal: float = 1e-3  # pull toward the personalized model received this round
    regularise: str = "official"  # "official": detached, no gradient; "grad": both terms train


def train_epochs(
    model: GCN,
    graph,
    optimizer: torch.optim.Optimizer,
    settings: LocalTraining,
    reference: dict[str, torch.Tensor] | None = None,
) -> float:
    """Full-batch epochs on the client's training nodes; returns the last loss value."""
    model.train()
    loss_value = 0.0
    for _ in range(settings.epochs):
        optimizer.zero_grad()
        out = model(graph.x, graph.edge_index)
        loss = F.cross_entropy(out[graph.train], graph.y[graph.train])
        loss = loss + _regularisers(model, settings, reference)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
    return loss_value


def _regularisers(model: GCN, settings: LocalTraining, reference: dict[str, torch.Tensor] | None) -> torch.Tensor:
    if settings.regularise not in ("official", "grad"):
        raise ValueError(f"regularise must be 'official' or 'grad', not {settings.regularise!r}")
    live = settings.regularise == "grad"
    params = dict(model.named_parameters()) if live else model.state_dict()
    total = torch.zeros(())
    for name, value in params.items():
        if MASK_KEY in name and settings.l1:
            total = total + settings.l1 * value.float().abs().sum()
        elif reference is not None and settings.proximal and name in reference:
            total = total + settings.proximal * torch.linalg.vector_norm(value.float() - reference[name], 2)
    return total


@torch.no_grad()
def accuracy(model: GCN, graph, *splits: str) -> dict[str, tuple[float, int]]:
    """Accuracy on each of the ``train``/``val``/``test`` node sets, and their sizes (one forward pass)."""
    model.eval()
    predicted = model(graph.x, graph.edge_index).argmax(dim=1)
    scores = {}
    for split in splits:
        mask = getattr(graph, split)
        count = int(mask.sum())
        scores[split] = (float((predicted[mask] == graph.y[mask]).float().mean()) if count else 0.0, count)
    return scores
