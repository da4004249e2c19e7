"""The bundled base model for adapter experiments: an MLP on scikit-learn's digits.

The digits (1,797 8x8 images, shipped inside scikit-learn) are split once, by a fixed seed,
into a public part that trained the base model and a private part dealt out to nodes, each
group of nodes naming the digits its own way (non-IID by concept shift). The base weights ship as ``assets/digits_mlp.safetensors`` so every node has
bit-identical weights (their SHA-256 is the base version adapters are checked against);
``python -m edgeswarm.learning.digits`` rebuilds the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BASE_ID = "digits-mlp"
ASSET = Path(__file__).resolve().parent / "assets" / "digits_mlp.safetensors"
CLASSES = 10
PUBLIC_SHARE = 0.3
SPLIT_SEED = 20231


class DigitsMLP(nn.Module):
    """64 -> 128 -> 128 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 128)
        self.out = nn.Linear(128, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@lru_cache(maxsize=1)
def _digits() -> tuple[Split, Split]:
    """(public, private) halves of the digits, features scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(data.target, dtype=torch.long)
    order = torch.as_tensor(np.random.default_rng(SPLIT_SEED).permutation(len(y)))
    cut = int(PUBLIC_SHARE * len(y))
    return Split(x[order[:cut]], y[order[:cut]]), Split(x[order[cut:]], y[order[cut:]])


def public_data() -> Split:
    return _digits()[0]


def cluster_of(node: int, clusters: int) -> int:
    return node % clusters


def label_map(cluster: int, seed: int = 0) -> np.ndarray:
    """Cluster 0 keeps the digits' labels; every other cluster permutes them (concept shift)."""
    if cluster == 0:
        return np.arange(CLASSES)
    return np.random.default_rng([seed, 1000 + cluster]).permutation(CLASSES)


def node_data(node: int, nodes: int, *, clusters: int = 5, samples: int = 120, seed: int = 0) -> tuple[Split, Split]:
    """Node ``node``'s (train, held-out) data: ``samples`` private digits, relabelled by its cluster.

    Nodes fall into ``clusters`` groups by index; each group names the digits its own way
    (``label_map``), so a peer's adapter helps only within its group and merging every
    adapter blindly mixes contradicting tasks. Examples are drawn per node from the private
    part (nodes may share images, never labels across groups).
    """
    if not 0 <= node < nodes:
        raise ValueError(f"node {node} outside 0..{nodes - 1}")
    private = _digits()[1]
    rng = np.random.default_rng([seed, node])
    picked = torch.as_tensor(rng.choice(len(private), size=min(samples, len(private)), replace=False))
    mapping = torch.as_tensor(label_map(cluster_of(node, clusters), seed))
    x, y = private.x[picked], mapping[private.y[picked]]
    cut = len(picked) // 2
    return Split(x[:cut], y[:cut]), Split(x[cut:], y[cut:])


def load_base() -> DigitsMLP:
    """The shipped base model (eval mode)."""
    from safetensors.torch import load_file

    model = DigitsMLP()
    model.load_state_dict(load_file(str(ASSET)))
    return model.eval()


@lru_cache(maxsize=1)
def base_version() -> str:
    """SHA-256 of the shipped weights: what an adapter's base must equal."""
    return hashlib.sha256(ASSET.read_bytes()).hexdigest()


def train_base(epochs: int = 300, seed: int = 0) -> DigitsMLP:
    torch.manual_seed(seed)
    model = DigitsMLP()
    data = public_data()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        optimizer.zero_grad()
        F.cross_entropy(model(data.x), data.y).backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: Split) -> float:
    model.eval()
    return float((model(data.x).argmax(dim=1) == data.y).float().mean()) if len(data) else 0.0


if __name__ == "__main__":
    from safetensors.torch import save_file

    ASSET.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in train_base().state_dict().items()}, str(ASSET))
    print(f"wrote {ASSET} ({ASSET.stat().st_size} bytes), sha256 {base_version()}")
