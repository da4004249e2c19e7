"""``edgeswarm subnet select`` as a user runs it: a first selection, a repeat, another device.

Runs the CLI in a fresh process each time on one new data dir: the phone profile (nothing
cached yet), the phone again (every measurement from the data dir's cache), then the
gateway (a declared profile with the same threads: it shares the phone's measurements).
Prints each run's CPU seconds (user + system, the process and its children) and wall
seconds, and what it chose. Targets (issue 15): < 60 s CPU for a first selection, < 5 s for
a repeated one. Last line: ``first_cpu_s=<s> repeat_cpu_s=<s> other_device_cpu_s=<s>``.

    python benchmarks/subnet_select.py [--measurements N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "edgeswarm"


def run(device: str, data_dir: Path, measurements: int) -> tuple[float, float, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        [
            str(CLI),
            "subnet",
            "select",
            "--device",
            str(REPO / f"configs/devices/{device}.toml"),
            "--data-dir",
            str(data_dir),
            "--measurements",
            str(measurements),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measurements", type=int, default=40)
    args = parser.parse_args()
    cpu = {}
    with tempfile.TemporaryDirectory(prefix="edgeswarm-select-") as tmp:
        for label, device in (("first", "phone"), ("repeat", "phone"), ("other_device", "gateway")):
            cpu[label], wall, chosen = run(device, Path(tmp), args.measurements)
            print(
                f"{label:12s} {device:8s} cpu {cpu[label]:6.1f} s  wall {wall:6.1f} s  "
                f"{chosen['from_cache']}/{chosen['measurements']} from the cache  "
                f"validation accuracy {chosen['validation_accuracy']:.4f}  test {chosen['accuracy']:.4f}  "
                f"measured {chosen['measured_latency_ms']:.3f} of {chosen['budget_ms']} ms  depths {chosen['config']['d']}"
            )
    print(
        f"first_cpu_s={cpu['first']:.1f} repeat_cpu_s={cpu['repeat']:.1f} other_device_cpu_s={cpu['other_device']:.1f}"
    )


if __name__ == "__main__":
    main()
