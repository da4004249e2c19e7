"""LoRA exchange as a simulator workload: train, publish, fetch, merge three ways.

Every step goes through a node's public adapter API (what ``edgeswarm lora ...`` calls):
``train``, ``publish``, ``pull``, ``merge``. Accuracy is each node's own held-out test data.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import trio

from edgeswarm.node.config import NodeConfig, Section
from edgeswarm.node.subnet.device import DeviceProfile

from .host import SimHost
from .workload import Workload


class LoraSpec(Section):
    """LoRA delta exchange: every node trains an adapter on its own data, publishes it,
    fetches every announced delta, then merges three ways; reported per node on its own
    held-out data: local only, merge of all deltas, and the validation policy.

    Nodes hold ``learning.digits`` data in ``clusters`` groups that name the digits
    differently (``[node.adapters]`` sets rank, targets, epochs, policy).
    """

    clusters: Annotated[int, msgspec.Meta(ge=1, le=10)] = 5
    samples: Annotated[int, msgspec.Meta(ge=4, le=1000)] = 120
    gossip_wait: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    method: Literal["flora", "ffa", "fedavg"] = "flora"


class LoraExperiment(Workload):
    name = "lora"
    Spec = LoraSpec

    def __init__(self, spec: LoraSpec, seed: int, hosts: list[SimHost]) -> None:
        super().__init__(spec, seed, hosts)
        self.results: dict[str, dict[int, float]] = {"local": {}, "merge_all": {}, "policy": {}}  # by node index
        self.chosen: list[int] = []
        self.same_cluster_share: list[float] = []
        self.failed_pulls = 0

    @classmethod
    def node_config(cls, spec: LoraSpec, base: NodeConfig, index: int, nodes: int, device: DeviceProfile) -> NodeConfig:
        """Adapters on; node ``index`` holds its share of the digits of its cluster."""
        adapters = msgspec.structs.replace(
            base.adapters, enabled=True, node_index=index, nodes=nodes, clusters=spec.clusters, samples=spec.samples
        )
        return msgspec.structs.replace(base, adapters=adapters)

    async def run(self, nursery: trio.Nursery) -> None:
        online = [h for h in self.hosts if h.node is not None]
        async with trio.open_nursery() as steps:
            for host in online:
                steps.start_soon(self._train_and_publish, host)
        await trio.sleep(self.spec.gossip_wait)  # announcements spread
        async with trio.open_nursery() as steps:
            for host in online:
                steps.start_soon(self._pull_all, host)
        async with trio.open_nursery() as steps:
            for host in online:
                steps.start_soon(self._merge, host)
        self.done.set()

    async def _train_and_publish(self, host: SimHost) -> None:
        adapters = host.node.adapters
        await adapters.train()
        await adapters.publish()

    async def _pull_all(self, host: SimHost) -> None:
        from edgeswarm.node.adapters.adapters import AdapterError

        adapters = host.node.adapters
        for row in adapters.list():
            if row.origin == "announced":
                try:
                    await adapters.pull(row.digest)
                except AdapterError:
                    self.failed_pulls += 1

    async def _merge(self, host: SimHost) -> None:
        adapters = host.node.adapters
        everything = await adapters.merge(policy="all", method=self.spec.method)
        policy = await adapters.merge(policy="validation", method=self.spec.method)
        self.results["local"][host.index] = policy["own_test_acc"]
        self.results["merge_all"][host.index] = everything["test_acc"]
        self.results["policy"][host.index] = policy["test_acc"]
        self.chosen.append(len(policy["peers"]))
        clusters = adapters.config.clusters
        mine = adapters.config.node_index % clusters
        by_digest = {r.digest: r for r in adapters.list()}
        index = {str(h.identity.peer_id): h.index for h in self.hosts}
        same = [index[by_digest[d].signer] % clusters == mine for d in policy["peers"]]
        self.same_cluster_share.append(float(np.mean(same)) if same else 1.0)

    def report(self) -> dict[str, Any]:
        counters = [h.counters() for h in self.hosts]
        wire = [
            sum(v for kind, v in c.get(direction, {}).items() if kind.startswith(("lora.", "blob.")))
            for c in counters
            for direction in ("bytes_in", "bytes_out")
        ]
        final = {
            "personal_accuracy": {k: round(float(np.mean(list(v.values()))), 6) for k, v in self.results.items() if v},
            "bytes_per_node": int(sum(wire) / max(len(self.hosts), 1)),
            "peers_merged_by_policy": round(float(np.mean(self.chosen)), 3) if self.chosen else 0.0,
            "policy_same_cluster_share": round(float(np.mean(self.same_cluster_share)), 6)
            if self.same_cluster_share
            else None,
            "failed_pulls": self.failed_pulls,
        }
        series = {k: [round(v[i], 6) for i in sorted(v)] for k, v in self.results.items()}  # per node, by index
        return {"final": final, "series": series}

    @staticmethod
    def summary(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [
            (f"personal accuracy {how}", f"{value:.4f}") for how, value in metrics.get("personal_accuracy", {}).items()
        ]
        return rows + [("peers merged by policy", str(metrics.get("peers_merged_by_policy")))]


WORKLOAD = LoraExperiment
