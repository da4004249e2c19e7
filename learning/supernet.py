"""An edge-sized Once-for-All MobileNetV3 supernet: its search space, genomes and training.

Space (``EDGE``): width 0.5, kernel {3, 5} and expand ratio {2, 3, 4} per elastic block (15),
depth {1, 2, 3} per stage (5): a genome is 35 integers, indexes into those choices.
Training uses the sandwich rule (largest, smallest and two random subnets per step, the
largest teaching the others by distillation) on the digits upsampled to 16x16, the
bundled image set; BatchNorm statistics are recalibrated per subnet before evaluation, as
OFA does. Subnets are extracted as static networks (``extract``) for export.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ofa_shim import OFAMobileNetV3, set_running_statistics

ASSET = Path(__file__).resolve().parent / "assets" / "ofa_digits_w05.safetensors"
IMAGE = 16
CLASSES = 10


class CheckpointError(ValueError):
    """A checkpoint that is not a supernet of the expected space."""


@dataclass(frozen=True)
class Space:
    width: float = 0.5
    kernels: tuple[int, ...] = (3, 5)
    expands: tuple[int, ...] = (2, 3, 4)
    depths: tuple[int, ...] = (1, 2, 3)
    stages: int = 5
    blocks_per_stage: int = 3  # = max depth

    @property
    def blocks(self) -> int:
        return self.stages * self.blocks_per_stage

    @property
    def genome_length(self) -> int:
        return 2 * self.blocks + self.stages

    @property
    def upper_bounds(self) -> np.ndarray:
        """Largest index per gene (genes are choice indexes, lower bound 0)."""
        return np.array(
            [len(self.kernels) - 1] * self.blocks
            + [len(self.expands) - 1] * self.blocks
            + [len(self.depths) - 1] * self.stages
        )

    def decode(self, genome) -> dict[str, list[int]]:
        g = [int(v) for v in genome]
        if len(g) != self.genome_length or any(not 0 <= v <= u for v, u in zip(g, self.upper_bounds)):
            raise ValueError(f"genome must be {self.genome_length} indexes within {self.upper_bounds.tolist()}")
        b = self.blocks
        return {
            "ks": [self.kernels[i] for i in g[:b]],
            "e": [self.expands[i] for i in g[b : 2 * b]],
            "d": [self.depths[i] for i in g[2 * b :]],
        }

    def active_genes(self, genome) -> np.ndarray:
        """The genome with genes of blocks a shallower depth skips set to 0 (one canonical form)."""
        g = np.array(genome, dtype=np.int64).copy()
        b = self.blocks
        for stage, depth_index in enumerate(g[2 * b :]):
            depth = self.depths[depth_index]
            for k in range(depth, self.blocks_per_stage):
                g[stage * self.blocks_per_stage + k] = 0
                g[b + stage * self.blocks_per_stage + k] = 0
        return g

    def random(self, rng: random.Random) -> np.ndarray:
        return self.active_genes([rng.randint(0, u) for u in self.upper_bounds])

    def largest(self) -> np.ndarray:
        return self.upper_bounds.copy()

    def smallest(self) -> np.ndarray:
        return np.zeros(self.genome_length, dtype=np.int64)


EDGE = Space()
# The space of Once-for-All's published ImageNet MobileNetV3 supernets (ofa_mbv3_d234_e346_k357_w1.0
# and w1.2), so a checkpoint a user already has loads: load(path, IMAGENET_MBV3, classes=1000).
IMAGENET_MBV3 = Space(width=1.0, kernels=(3, 5, 7), expands=(3, 4, 6), depths=(2, 3, 4), blocks_per_stage=4)


def build(space: Space = EDGE, classes: int = CLASSES) -> OFAMobileNetV3:
    return OFAMobileNetV3(
        n_classes=classes,
        width_mult=space.width,
        ks_list=list(space.kernels),
        expand_ratio_list=list(space.expands),
        depth_list=list(space.depths),
        dropout_rate=0.0,
    )


def activate(net: OFAMobileNetV3, genome, space: Space = EDGE) -> None:
    net.set_active_subnet(**space.decode(genome))


@lru_cache(maxsize=1)
def image_data(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The digits as 3 x 16 x 16 images, split 60/20/20 into train/val/test (fixed seed)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = F.interpolate(x, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - 0.5) / 0.5
    y = torch.as_tensor(data.target, dtype=torch.long)
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(y)))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    return {
        "train": (x[order[:a]], y[order[:a]]),
        "val": (x[order[a:b]], y[order[a:b]]),
        "test": (x[order[b:]], y[order[b:]]),
    }


def batches(x: torch.Tensor, y: torch.Tensor, size: int, rng: random.Random | None = None):
    order = list(range(len(y)))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), size):
        index = torch.as_tensor(order[start : start + size])
        yield x[index], y[index]


def train_supernet(
    net: OFAMobileNetV3,
    epochs: int = 20,
    *,
    space: Space = EDGE,
    seed: int = 0,
    lr: float = 0.01,
    batch: int = 64,
    log=None,
) -> None:
    """Sandwich-rule training with in-place distillation from the largest subnet."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    x, y = image_data()["train"]
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=3e-5, nesterov=True)
    steps = epochs * ((len(y) + batch - 1) // batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr * 5, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        for xb, yb in batches(x, y, batch, rng):
            optimizer.zero_grad()
            activate(net, space.largest(), space)
            teacher_logits = net(xb)
            F.cross_entropy(teacher_logits, yb).backward()
            soft = teacher_logits.detach().softmax(dim=1)
            for genome in (space.smallest(), space.random(rng), space.random(rng)):
                activate(net, genome, space)
                logits = net(xb)
                loss = 0.5 * F.cross_entropy(logits, yb) + 0.5 * F.kl_div(
                    logits.log_softmax(dim=1), soft, reduction="batchmean"
                )
                loss.backward()
            optimizer.step()
            scheduler.step()
        if log is not None:
            log(
                f"epoch {epoch + 1}/{epochs}: largest {accuracy(net, space.largest(), 'val', space):.3f}, "
                f"smallest {accuracy(net, space.smallest(), 'val', space):.3f}"
            )


def subnet(net: OFAMobileNetV3, genome, space: Space = EDGE) -> nn.Module:
    """The static subnet for ``genome`` with BatchNorm statistics recalibrated on training data."""
    activate(net, genome, space)
    static = net.get_active_subnet(preserve_weight=True)
    x, y = image_data()["train"]
    set_running_statistics(static, list(batches(x[:512], y[:512], 128)))
    return static.eval()


@torch.no_grad()
def evaluate(model: nn.Module, split: str = "val") -> float:
    """Accuracy of a static (extracted) subnet on a split of the bundled images."""
    model.eval()
    x, y = image_data()[split]
    return float((model(x).argmax(dim=1) == y).float().mean())


def accuracy(net: OFAMobileNetV3, genome, split: str = "val", space: Space = EDGE) -> float:
    return evaluate(subnet(net, genome, space), split)


def load(path: Path | None = None, space: Space = EDGE, classes: int = CLASSES) -> OFAMobileNetV3:
    """The trained supernet: the shipped weights, or a checkpoint from ``path`` (safetensors,
    or a torch checkpoint with a ``state_dict``, read with ``weights_only=True``). Nothing is
    downloaded; a checkpoint of another space raises with the mismatching tensors."""
    net = build(space, classes)
    source = Path(path) if path is not None else ASSET
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(source)).items()}
    else:
        checkpoint = torch.load(str(source), map_location="cpu", weights_only=True)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    try:
        net.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:  # ofa raises ValueError on unknown keys
        raise CheckpointError(f"{source} does not fit this supernet space ({space}): {exc}"[:500]) from None
    return net.eval()


def save(net: OFAMobileNetV3, path: Path = ASSET, dtype: torch.dtype = torch.float16) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path))


if __name__ == "__main__":  # python -m edgeswarm.learning.supernet [epochs]
    import sys
    import time

    torch.set_num_threads(2)
    net = build()
    started = time.time()
    train_supernet(net, int(sys.argv[1]) if len(sys.argv) > 1 else 20, log=print)
    save(net)
    print(f"trained in {time.time() - started:.0f} s; wrote {ASSET} ({ASSET.stat().st_size} bytes)")
