"""Subnet measurements kept in the data dir, so a repeated ``subnet select`` measures nothing.

Two tables in one JSON file (``<data_dir>/subnet/measurements.json``):

- validation **accuracy** per supernet checkpoint (its SHA-256) and subnet genome: it does
  not depend on the device;
- onnxruntime **latency** per machine and thread count and subnet genome, as measured here,
  before any profile's scaling: a declared profile (the phone, the gateway) scales the same
  measurement by 1 / compute_speed, so every profile with the same threads shares it.

The file is rewritten whole through a temporary file and ``os.replace``, so a crash leaves
either the old or the new file, never half of one; a file that does not parse (or another
version) is set aside as ``measurements.json.bad`` and the cache starts empty. At most
``MAX_ENTRIES`` genomes per table and key are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np

VERSION = 1
MAX_ENTRIES = 20_000


def genome_key(genome: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in genome)


def file_digest(path: Path) -> str:
    """SHA-256 of a checkpoint file: its accuracies hold for exactly these weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine_key(threads: int) -> str:
    """What a latency measured here depends on: CPU model, cores, onnxruntime, threads."""
    import onnxruntime

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} | {os.cpu_count()} cpus | onnxruntime {onnxruntime.__version__} | {threads} threads"


class SubnetCache:
    """Accuracy by checkpoint and latency by machine, for each subnet measured so far."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.accuracy: dict[str, dict[str, float]] = {}
        self.latency: dict[str, dict[str, float]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") != VERSION:
                    raise ValueError(f"version {data.get('version')!r}")
                self.accuracy = {k: {g: float(v) for g, v in t.items()} for k, t in data["accuracy"].items()}
                self.latency = {k: {g: float(v) for g, v in t.items()} for k, t in data["latency"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                os.replace(self.path, self.path.with_name(self.path.name + ".bad"))
                self.accuracy, self.latency = {}, {}

    def get(self, table: dict[str, dict[str, float]], key: str, genome: np.ndarray) -> float | None:
        return table.get(key, {}).get(genome_key(genome))

    def put(self, table: dict[str, dict[str, float]], key: str, genome: np.ndarray, value: float) -> None:
        entries = table.setdefault(key, {})
        if len(entries) < MAX_ENTRIES or genome_key(genome) in entries:
            entries[genome_key(genome)] = float(value)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps({"version": VERSION, "accuracy": self.accuracy, "latency": self.latency}))
        os.replace(partial, self.path)
