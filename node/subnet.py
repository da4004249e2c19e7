"""Where a subnet is chosen: the Once-for-All subnet that fits this device, run by onnxruntime.

``select`` searches the shared supernet with predictors in the loop (``learning.nas.linas``),
keeps the most accurate measured subnet whose latency fits the device's budget, verifies it
by a fresh measurement, and writes ``<data_dir>/subnet/model.onnx`` and ``config.json``.
Latency is measured here with onnxruntime and the profile's threads; for a *declared*
profile of another device (``configs/devices/*.toml``) it is scaled by 1 / compute_speed,
the profile's speed relative to the reference laptop core, so a phone's budget is judged on
a phone's modelled speed. ``classify`` runs the chosen model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .device import DeviceProfile

SUBNET_DIR = "subnet"


def select(profile: DeviceProfile, data_dir: Path, *, measured_here: bool = False, checkpoint: Path | None = None,
           budget: int = 40, seed: int = 0) -> dict[str, Any]:
    """Choose, verify and write the subnet for ``profile``; returns what ``subnet select --json`` prints."""
    import torch

    from edgeswarm.learning import cost, nas, supernet

    torch.manual_seed(seed)
    net = supernet.load(checkpoint)
    scale = 1.0 if measured_here else 1.0 / profile.compute_speed

    def measure(genome: np.ndarray) -> tuple[float, float]:
        model = supernet.subnet(net, genome)
        latency, _ = cost.measure(model, threads=profile.threads, repeats=30)
        return supernet.evaluate(model, "val"), latency * scale

    archive, _ = nas.linas(nas.Archive(supernet.EDGE, measure), budget=budget, seed=seed)
    genomes = np.array(archive.genomes)
    latency_model = nas.Predictor(supernet.EDGE).fit(genomes, np.array([lat for _, lat in archive.results]))
    order = sorted(range(len(archive)), key=lambda i: -archive.results[i][0])
    fitting = [i for i in order if archive.results[i][1] <= profile.latency_budget_ms]
    if not fitting:  # nothing measured fits: the smallest subnet is the best we can do
        archive(supernet.EDGE.smallest())
        fitting = [len(archive) - 1]
    for index in fitting:  # verify by a fresh, longer measurement
        genome = archive.genomes[index]
        model = supernet.subnet(net, genome)
        out = Path(data_dir).expanduser() / SUBNET_DIR
        out.mkdir(parents=True, exist_ok=True)
        onnx_path = cost.export_onnx(model, out / "model.onnx")
        measured = cost.measure_latency_ms(onnx_path, profile.threads, repeats=100) * scale
        if measured <= profile.latency_budget_ms or index == fitting[-1]:
            break
    config = {"genome": [int(v) for v in genome], **supernet.EDGE.decode(genome), "width": supernet.EDGE.width,
              "image": supernet.IMAGE, "device": profile.name, "threads": profile.threads}
    result = {
        "onnx_path": str(onnx_path),
        "config": config,
        "predicted_latency_ms": round(float(latency_model.predict(genome[None, :])[0]), 4),
        "measured_latency_ms": round(measured, 4),
        "budget_ms": profile.latency_budget_ms,
        "accuracy": round(supernet.evaluate(model, "test"), 4),
        "fits": measured <= profile.latency_budget_ms,
        "measurements": len(archive),
        "pareto": [{"genome": [int(v) for v in archive.genomes[i]], "accuracy": round(archive.results[i][0], 4),
                    "latency_ms": round(archive.results[i][1], 4)}
                   for i in sorted(nas.pareto(archive.points()), key=lambda i: archive.results[i][1])],
    }
    (out / "config.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def classify(data_dir: Path, images: np.ndarray) -> np.ndarray:
    """Class predictions of the selected subnet (onnxruntime) for N x 3 x 16 x 16 images."""
    from edgeswarm.learning import cost

    path = Path(data_dir).expanduser() / SUBNET_DIR / "model.onnx"
    if not path.exists():
        raise FileNotFoundError(f"no selected subnet in {path.parent}: run `edgeswarm subnet select` first")
    config = json.loads((path.parent / "config.json").read_text())
    session = cost.session(path, int(config["config"].get("threads", 1)))
    logits = session.run(None, {"images": images.astype(np.float32)})[0]
    return logits.argmax(axis=1)
