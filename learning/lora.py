"""LoRA adapters with peft on plain torch modules, and their bytes on the wire.

A *delta* is an adapter's state dict as safetensors, with its adapter config (rank, alpha,
target modules) and the base model it was trained on in the safetensors metadata. It is
addressed by the SHA-256 of those bytes. ``decode`` checks everything (size, base id and
version, rank, targets, every tensor's name, dtype and shape against the base) before a
tensor is used, so a malformed or incompatible delta never touches a model. ``save_peft``
writes the standard ``adapter_model.safetensors`` + ``adapter_config.json`` pair that
``peft.PeftModel.from_pretrained`` loads.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

KEY = re.compile(r"^base_model\.model\.(?P<module>[A-Za-z0-9_.]+)\.lora_(?P<part>[AB])\.weight$")
MAX_RANK = 256


class DeltaError(ValueError):
    """A delta that is malformed or does not fit this node's base model."""


@dataclass(frozen=True)
class AdapterSpec:
    """rank r, alpha (scaling alpha / r), target modules; ``frozen_a_seed`` gives every peer the
    same frozen A matrices (FFA-LoRA), so averaging B is an exact merge."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("out",)
    frozen_a_seed: int | None = None


@dataclass(frozen=True)
class Delta:
    """Adapter tensors by module: ``a[m]`` is r x in, ``b[m]`` is out x r, update = scale * B A."""

    rank: int
    alpha: float
    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    base_id: str = ""
    base_version: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def modules(self) -> list[str]:
        return sorted(self.a)

    def update(self, module: str) -> torch.Tensor:
        """The dense weight update this delta adds to ``module``."""
        return self.scale * (self.b[module].double() @ self.a[module].double())


def adapt(base: nn.Module, spec: AdapterSpec):
    """A trainable peft LoRA model over a copy of ``base`` (the base itself stays untouched)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, target_modules=list(spec.targets), lora_dropout=0.0)
    model = get_peft_model(copy.deepcopy(base), config)
    if spec.frozen_a_seed is not None:
        generator = torch.Generator().manual_seed(spec.frozen_a_seed)
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                weight = module.lora_A["default"].weight
                with torch.no_grad():
                    weight.copy_(torch.randn(weight.shape, generator=generator) / weight.shape[1] ** 0.5)
                weight.requires_grad_(False)
    return model


def train(model, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 100, lr: float = 0.01) -> float:
    """Full-batch Adam on the adapter's trainable tensors; returns the last loss."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr)
    model.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


def delta_of(model, *, base_id: str, base_version: str) -> Delta:
    from peft import get_peft_model_state_dict

    config = model.peft_config["default"]
    state = get_peft_model_state_dict(model)
    a, b = {}, {}
    for key, value in state.items():
        match = KEY.match(key)
        if match is None:
            raise DeltaError(f"unexpected adapter tensor {key!r}")
        (a if match["part"] == "A" else b)[match["module"]] = value.detach().clone()
    return Delta(config.r, float(config.lora_alpha), a, b, base_id, base_version)


def encode(delta: Delta, *, dtype: torch.dtype = torch.float32, meta: dict[str, str] | None = None) -> bytes:
    """safetensors bytes with the adapter config and base in the metadata (deterministic)."""
    from safetensors.torch import save

    tensors = {}
    for module in delta.modules:
        tensors[f"base_model.model.{module}.lora_A.weight"] = delta.a[module].to(dtype).contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = delta.b[module].to(dtype).contiguous()
    metadata = {
        "format": "pt",
        "edgeswarm.rank": str(delta.rank),
        "edgeswarm.alpha": repr(delta.alpha),
        "edgeswarm.base_id": delta.base_id,
        "edgeswarm.base_version": delta.base_version,
        **{f"edgeswarm.meta.{k}": v for k, v in (meta or delta.meta).items()},
    }
    return _canonical(save(tensors, metadata=metadata))


def _canonical(data: bytes) -> bytes:
    """Re-emit a safetensors header with sorted keys (the library writes metadata in hash-map
    order), so equal deltas give equal bytes and one content address."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes with spaces
    return len(header).to_bytes(8, "little") + header + data[8 + size :]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(
    data: bytes,
    base: nn.Module,
    *,
    base_id: str,
    base_version: str,
    max_bytes: int = 16 << 20,
    max_rank: int = MAX_RANK,
) -> Delta:
    """Parse and check a delta against ``base``; raises DeltaError with the reason."""
    if len(data) > max_bytes:
        raise DeltaError(f"delta of {len(data)} bytes exceeds {max_bytes}")
    header = _header(data)
    metadata = header.pop("__metadata__", {}) or {}
    if metadata.get("edgeswarm.base_id") != base_id or metadata.get("edgeswarm.base_version") != base_version:
        raise DeltaError(
            f"trained on base {metadata.get('edgeswarm.base_id')!r} "
            f"{str(metadata.get('edgeswarm.base_version'))[:12]}, not this node's {base_id!r} "
            f"{base_version[:12]}"
        )
    try:
        rank, alpha = int(metadata["edgeswarm.rank"]), float(metadata["edgeswarm.alpha"])
    except (KeyError, ValueError):
        raise DeltaError("missing or bad rank/alpha in the metadata") from None
    if not 0 < rank <= max_rank or not 0 < alpha < 1e6:
        raise DeltaError(f"rank {rank} / alpha {alpha} out of bounds")
    linear = {name: m for name, m in base.named_modules() if isinstance(m, nn.Linear)}
    expected: dict[str, tuple[int, int]] = {}
    for key, info in header.items():
        match = KEY.match(key)
        if match is None or match["module"] not in linear:
            raise DeltaError(f"tensor {key!r} names no linear layer of the base")
        out_features, in_features = linear[match["module"]].weight.shape
        shape = [rank, in_features] if match["part"] == "A" else [out_features, rank]
        if info.get("dtype") not in ("F32", "F16", "BF16") or info.get("shape") != shape:
            raise DeltaError(f"tensor {key!r} is {info.get('dtype')} {info.get('shape')}, expected a float {shape}")
        expected[key] = tuple(shape)
    modules = {KEY.match(k)["module"] for k in expected}
    if not modules or len(expected) != 2 * len(modules):
        raise DeltaError("every target module needs exactly one A and one B")
    from safetensors.torch import load

    tensors = load(data)
    a = {m: tensors[f"base_model.model.{m}.lora_A.weight"].float() for m in modules}
    b = {m: tensors[f"base_model.model.{m}.lora_B.weight"].float() for m in modules}
    if not all(torch.isfinite(t).all() for t in (*a.values(), *b.values())):
        raise DeltaError("delta holds NaN or infinite values")
    meta = {k.removeprefix("edgeswarm.meta."): v for k, v in metadata.items() if k.startswith("edgeswarm.meta.")}
    return Delta(rank, alpha, a, b, base_id, base_version, meta)


def _header(data: bytes) -> dict:
    """The safetensors JSON header, bounded and validated before any tensor is read."""
    if len(data) < 8:
        raise DeltaError("too short for safetensors")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, 1 << 20):
        raise DeltaError("safetensors header larger than the data or 1 MiB")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DeltaError("safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise DeltaError("safetensors header is not an object")
    return header


def apply(base: nn.Module, delta: Delta) -> nn.Module:
    """A copy of ``base`` with ``delta`` merged into its weights (what inference runs)."""
    merged = copy.deepcopy(base)
    modules = dict(merged.named_modules())
    with torch.no_grad():
        for module in delta.modules:
            weight = modules[module].weight
            weight += delta.update(module).to(weight.dtype)
    return merged.eval()


def save_peft(delta: Delta, directory: Path) -> None:
    """Write the delta as a peft adapter directory (loads with ``PeftModel.from_pretrained``)."""
    from peft import LoraConfig

    directory.mkdir(parents=True, exist_ok=True)
    config = LoraConfig(r=delta.rank, lora_alpha=delta.alpha, target_modules=delta.modules, lora_dropout=0.0)
    config.save_pretrained(str(directory))
    from safetensors.torch import save_file

    tensors = {}
    for module in delta.modules:
        tensors[f"base_model.model.{module}.lora_A.weight"] = delta.a[module].contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = delta.b[module].contiguous()
    save_file(tensors, str(directory / "adapter_model.safetensors"))
