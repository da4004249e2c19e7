"""What a subnet costs on this device: ONNX export and onnxruntime timing.

Latency is the median of repeated single-image runs after a warm-up, with the thread count
the device profile gives; memory is the model's weight bytes in the ONNX file (activations
of these small nets are far smaller). Export uses torch's TorchScript-based exporter with a
dynamic batch axis, one self-contained file.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .supernet import IMAGE


def export_onnx(model: nn.Module, path: Path) -> Path:
    model.eval()
    dummy = torch.zeros(1, 3, IMAGE, IMAGE)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def session(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_latency_ms(
    path: Path, threads: int = 1, warmup: int = 10, repeats: int = 50, shape: tuple[int, ...] = (1, 3, IMAGE, IMAGE)
) -> float:
    """Median single-image latency in milliseconds, measured with onnxruntime."""
    runner = session(path, threads)
    image = np.zeros(shape, dtype=np.float32)
    for _ in range(warmup):
        runner.run(None, {"images": image})
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        runner.run(None, {"images": image})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(model: nn.Module, threads: int = 1, repeats: int = 50) -> tuple[float, int]:
    """(latency ms, weight bytes) of ``model`` exported to ONNX and run by onnxruntime."""
    with tempfile.TemporaryDirectory(prefix="edgeswarm-onnx-") as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        return measure_latency_ms(path, threads, repeats=repeats), path.stat().st_size


def microbenchmark_ms(threads: int = 1) -> float:
    """A fixed reference workload (a 64-channel 3x3 conv stack) timed with onnxruntime: the
    device's speed relative to others, for profiles measured on the spot."""
    reference = nn.Sequential(*[nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()) for _ in range(4)])
    with tempfile.TemporaryDirectory(prefix="edgeswarm-onnx-") as tmp:
        path = Path(tmp) / "reference.onnx"
        torch.onnx.export(
            reference,
            (torch.zeros(1, 64, 32, 32),),
            str(path),
            input_names=["images"],
            output_names=["out"],
            opset_version=17,
            dynamo=False,
        )
        return measure_latency_ms(path, threads, shape=(1, 64, 32, 32))


@torch.no_grad()
def macs(model: nn.Module) -> int:
    """Multiply-accumulates of one 16x16 image through ``model`` (convolutions and linear layers)."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += (
                output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
            )
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        model.eval()(torch.zeros(1, 3, IMAGE, IMAGE))
    finally:
        for hook in hooks:
            hook.remove()
    return total
