"""Where a subnet is chosen: the Once-for-All subnet that fits this device, run by onnxruntime.

``select`` searches the shared supernet with predictors in the loop (``learning.nas.linas``)
and keeps, among every subnet it measured, the most accurate one (validation accuracy;
the faster on a tie) whose latency fits the device's budget (``choose``). It verifies that
choice by a fresh, longer measurement (a choice that then misses the budget is passed over
for the next; ``passed_over`` counts them) and writes ``<data_dir>/subnet/model.onnx`` and
``config.json``, which lists every subnet measured. If none fits, it takes the smallest.

Latency is measured here with onnxruntime and the profile's threads; for a *declared*
profile of another device (``configs/devices/*.toml``) it is scaled by 1 / compute_speed,
the profile's speed relative to the reference laptop core, so a phone's budget is judged on
a phone's modelled speed. The search itself runs on the unscaled measurements and every
measurement is cached in the data dir (``node.subnet_cache``), so every profile searched
here sees the same measured subnets: a larger budget then never picks a subnet that is
less accurate, and a repeated selection measures nothing. ``classify`` runs the chosen model.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeswarm.node.subnet.device import DeviceProfile
from edgeswarm.node.subnet.subnet_cache import SubnetCache, file_digest, machine_key

SUBNET_DIR = "subnet"
CACHE_FILE = "measurements.json"

Progress = Callable[[int, int, int], None]
"""Called after each subnet of the search: (done, total, of them served from the cache)."""


def choose(results: Sequence[tuple[float, float]], limit: float) -> list[int]:
    """Indexes of the (accuracy, latency) results within ``limit``, best first.

    Best is the most accurate; on equal accuracy, the faster; then the earlier. Since a
    larger limit only adds results, its first choice is never less accurate than a smaller
    limit's, and never slower at the same accuracy.
    """
    fitting = [i for i, (_, latency) in enumerate(results) if latency <= limit]
    return sorted(fitting, key=lambda i: (-results[i][0], results[i][1], i))


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Small convolutions run faster on one thread than two fighting over two cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def select(
    profile: DeviceProfile,
    data_dir: Path,
    *,
    measured_here: bool = False,
    checkpoint: Path | None = None,
    budget: int = 40,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Choose, verify and write the subnet for ``profile``; returns what ``subnet select --json`` prints.

    ``budget`` is the number of subnets the search measures (cached ones count too, so a
    repeated selection follows the same path and measures nothing new).
    """
    import torch

    from edgeswarm.learning import cost, nas, supernet

    out = Path(data_dir).expanduser() / SUBNET_DIR
    with _torch_threads(1):
        torch.manual_seed(seed)
        net = supernet.load(checkpoint)
        scale = 1.0 if measured_here else 1.0 / profile.compute_speed
        cache = SubnetCache(out / CACHE_FILE)
        weights = file_digest(Path(checkpoint) if checkpoint is not None else supernet.ASSET)
        machine = machine_key(profile.threads)
        served = 0

        def measure(genome: np.ndarray) -> tuple[float, float]:
            """(validation accuracy, latency in ms here, unscaled), from the cache if it can."""
            nonlocal served
            accuracy = cache.get(cache.accuracy, weights, genome)
            latency = cache.get(cache.latency, machine, genome)
            if accuracy is None or latency is None:
                model = supernet.subnet(net, genome)
                if accuracy is None:
                    accuracy = supernet.evaluate(model, "val")
                    cache.put(cache.accuracy, weights, genome, accuracy)
                if latency is None:
                    latency, _ = cost.measure(model, threads=profile.threads, repeats=30)
                    cache.put(cache.latency, machine, genome, latency)
            else:
                served += 1
            if progress is not None:
                progress(len(archive) + 1, max(budget, len(archive) + 1), served)
            return accuracy, latency

        archive = nas.Archive(supernet.EDGE, measure)
        try:
            nas.linas(archive, budget=budget, seed=seed)
            scaled = [(accuracy, latency * scale) for accuracy, latency in archive.results]  # on this device
            ranked = choose(scaled, profile.latency_budget_ms)
            if not ranked:  # nothing measured fits: the smallest subnet is the best we can do
                smallest = supernet.EDGE.smallest()
                archive(smallest)  # measured now, unless the search measured it already
                scaled = [(accuracy, latency * scale) for accuracy, latency in archive.results]
                ranked = [archive.index(smallest)]
        finally:
            cache.save()  # what was measured stays measured, even if the search was interrupted
        out.mkdir(parents=True, exist_ok=True)
        passed_over = 0
        for index in ranked:  # verify by a fresh, longer measurement
            genome = archive.genomes[index]
            model = supernet.subnet(net, genome)
            onnx_path = cost.export_onnx(model, out / "model.onnx")
            fresh = cost.measure_latency_ms(onnx_path, profile.threads, repeats=100)
            if fresh * scale <= profile.latency_budget_ms or index == ranked[-1]:
                break
            passed_over += 1
        latency_model = nas.Predictor(supernet.EDGE).fit(
            np.array(archive.genomes), np.array([lat for _, lat in scaled])
        )
        accuracy = supernet.evaluate(model, "test")
    verified_ms = fresh * scale
    config = {
        "genome": [int(v) for v in genome],
        **supernet.EDGE.decode(genome),
        "width": supernet.EDGE.width,
        "image": supernet.IMAGE,
        "device": profile.name,
        "threads": profile.threads,
    }
    result = {
        "onnx_path": str(onnx_path),
        "config": config,
        "predicted_latency_ms": round(float(latency_model.predict(genome[None, :])[0]), 4),
        "measured_latency_ms": round(verified_ms, 4),
        "budget_ms": profile.latency_budget_ms,
        "validation_accuracy": round(archive.results[index][0], 4),
        "accuracy": round(accuracy, 4),
        "fits": verified_ms <= profile.latency_budget_ms,
        "measurements": len(archive),
        "from_cache": served,
        "passed_over": passed_over,
        "pareto": [
            {
                "genome": [int(v) for v in archive.genomes[i]],
                "accuracy": round(archive.results[i][0], 4),
                "latency_ms": round(scaled[i][1], 4),
            }
            for i in sorted(nas.pareto(archive.points()), key=lambda i: archive.results[i][1])
        ],
        "measured": [
            {"genome": [int(v) for v in g], "accuracy": a, "latency_ms": lat}
            for g, (a, lat) in zip(archive.genomes, scaled, strict=True)
        ],
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
