"""LoRA delta exchange: delta sizes, fetch/verify/merge latency between daemons, merge policy.

1. Delta bytes (safetensors + adapter config) for rank 4/8/16, fp32 and fp16, on the bundled
   base (head only, and head + hidden layer).
2. Two real daemons over libp2p on loopback: one trains and publishes 20 deltas, the other
   pulls (fetch + verify) all 20, then merges them: wall time of each step.
3. ``configs/sim/lora.toml`` (50 nodes): personal accuracy for local only, merge-all and the
   validation policy, and bytes on the wire per node; FLoRA's error against the exact sum.

The last line is ``policy=<acc> merge_all=<acc> local=<acc> bytes_per_node=<int> exact_merge_err=<float>``.

    python benchmarks/lora_exchange.py [--deltas 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from edgeswarm.learning import digits
from edgeswarm.learning.lora import AdapterSpec, adapt, delta_of, encode, train
from edgeswarm.learning.lora_merge import fedavg_ab, flora, merge_error, normalise
from edgeswarm.sim.processes import DaemonGroup
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
DAEMON = """
[membership]
shuffle_interval = 1.0
[network]
eclipse_protection = false
[adapters]
enabled = true
node_index = {index}
nodes = 50
"""


def delta_sizes() -> None:
    base = digits.load_base()
    data, _ = digits.node_data(1, 50)
    print("delta bytes (safetensors incl. metadata):")
    print("  targets      rank   fp32    fp16")
    for targets in (("out",), ("fc2", "out")):
        for rank in (4, 8, 16):
            model = adapt(base, AdapterSpec(rank=rank, alpha=2.0 * rank, targets=targets))
            train(model, data.x, data.y, epochs=5)
            delta = delta_of(model, base_id=digits.BASE_ID, base_version=digits.base_version())
            print(
                f"  {'+'.join(targets):11s} {rank:5d} {len(encode(delta)):7d} {len(encode(delta, dtype=torch.float16)):7d}"
            )


def daemons(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="edgeswarm-lora-") as tmp, DaemonGroup(Path(tmp) / "swarm") as group:
        configs = []
        for index in (0, 1):
            path = Path(tmp) / f"{index}.toml"
            path.write_text(DAEMON.format(index=index))
            configs.append(["--config", str(path)])
        a = group.spawn("a", args=configs[0])
        b = group.spawn("b", bootstrap=[a.status()["addresses"][0]], args=configs[1])
        deadline = time.monotonic() + 60
        while not a.status()["peers"] and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(2.0)  # GossipSub mesh
        started = time.perf_counter()
        digests = []
        for _ in range(count):
            digests.append(a.request({"cmd": "lora_train"}, timeout=300)["digest"])
        train_s = time.perf_counter() - started
        for d in digests:
            a.request({"cmd": "lora_publish", "digest": d})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            heard = {r["digest"] for r in b.request({"cmd": "lora_list"})["adapters"]}
            if heard >= set(digests):
                break
            time.sleep(0.2)
        b.request({"cmd": "lora_train"}, timeout=300)
        started = time.perf_counter()
        for d in digests:
            b.request({"cmd": "lora_pull", "digest": d}, timeout=120)
        fetch_s = time.perf_counter() - started
        started = time.perf_counter()
        merged = b.request({"cmd": "lora_merge", "policy": "all"}, timeout=300)
        merge_s = time.perf_counter() - started
        sizes = [r["size"] for r in b.request({"cmd": "lora_list"})["adapters"] if r["digest"] in set(digests)]
    print(
        f"two daemons over libp2p: trained {count} deltas in {train_s:.2f} s; fetch + verify {count} deltas "
        f"({sum(sizes)} bytes) {fetch_s:.2f} s ({1000 * fetch_s / count:.1f} ms each); merge own + "
        f"{len(merged['peers'])} {merge_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--skip-daemons", action="store_true")
    args = parser.parse_args()
    delta_sizes()
    if not args.skip_daemons:
        daemons(args.deltas)

    report = run_scenario(load_scenario(REPO / "configs/sim/lora.toml"), out_dir=None)
    metrics = report["metrics"]
    accuracy = metrics["personal_accuracy"]
    print(
        f"simulator, 50 nodes in 5 groups ({report['wall_seconds']:.1f} s wall): personal test accuracy "
        f"local {accuracy['local']:.4f}, merge-all {accuracy['merge_all']:.4f}, policy {accuracy['policy']:.4f} "
        f"(policy merged {metrics['peers_merged_by_policy']} peers on average, "
        f"{100 * metrics['policy_same_cluster_share']:.1f}% from the node's own group); "
        f"{metrics['bytes_per_node']} bytes on the wire per node"
    )

    base = digits.load_base()
    deltas, samples = [], []
    for node in range(20):
        data, _ = digits.node_data(node, 50)
        model = adapt(base, AdapterSpec(rank=4 + 4 * (node % 3), alpha=16.0, targets=("fc2", "out")))
        train(model, data.x, data.y, epochs=10)
        deltas.append(delta_of(model, base_id=digits.BASE_ID, base_version=digits.base_version()))
        samples.append(len(data))
    weights = normalise(samples)
    error = merge_error(flora(deltas, weights), deltas, weights)
    print(f"FLoRA stacking of 20 deltas of ranks 4/8/12: relative error {error:.2e} against sum p_i s_i B_i A_i")
    same_rank = [d for d in deltas if d.rank == 4]
    even = normalise([1] * len(same_rank))
    print(
        f"FedAvg of A and B separately over the {len(same_rank)} rank-4 deltas: relative error "
        f"{merge_error(fedavg_ab(same_rank, even), same_rank, even):.3f} (inexact by construction)"
    )
    print(
        f"policy={accuracy['policy']:.4f} merge_all={accuracy['merge_all']:.4f} local={accuracy['local']:.4f} "
        f"bytes_per_node={metrics['bytes_per_node']} exact_merge_err={error:.3e}"
    )


if __name__ == "__main__":
    main()
