"""Federated runs as a simulator workload: one host, ``clients`` clients, one run per strategy.

The host node runs ``Federation.host`` exactly as ``edgeswarm fl host`` does; clients
auto-join from their config. Accuracy comes from the clients' own evaluate replies (what a
user of ``fl status`` sees). Attackers are client nodes whose ClientApp is swapped for one
that sends scaled noise: the node code around it is unchanged.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import trio

from edgeswarm.learning.keys import ARRAYS, METRICS, NUM_EXAMPLES
from edgeswarm.node.config import NodeConfig, Section
from edgeswarm.node.subnet.device import DeviceProfile

from .determinism import derive_seed
from .host import SimHost
from .plots import finish, gaps
from .workload import Workload

HOST = 0


class FlSpec(Section):
    """Federated runs over the swarm: node 0 hosts, nodes 1..``clients`` are the clients.

    Each strategy in ``strategies`` is one Flower run of ``rounds`` rounds on the same
    client subgraphs (``graph_source``: ``builtin`` or ``planetoid:<root>``, split into
    ``clients`` METIS parts, ``partition_mode`` disjoint or overlapping). Reported per run:
    mean client accuracy per round (each client's own evaluation of what it received), and
    the test accuracy at the round of best mean validation accuracy.

    Task ``ofa``: each client trains the OFA subnet its device profile affords (chosen by
    ``sim.fl_workload.device_genome``) inside the shared supernet; use strategy ``weightsharing``.

    ``malicious``: that many clients send ``malicious_scale`` x N(0, 1) instead of their
    update (``malicious_kind`` "noise"), or NaN weights ("nan"), a tensor of another shape
    ("shape"), an extra array ("extra-key"), or noise claiming 1e12 examples ("inflate"); or
    they join and never answer ("silent"), add a 1 MB junk config record to honest replies
    ("config-junk"), or pad them with 8 MB of zeros ("oversize"). ``dropout``: that many
    clients crash ``dropout_after`` virtual seconds into round ``dropout_round`` of every run
    and stay down; the round must complete without them. ``max_clients``: the run takes at
    most that many joiners (default: the host's config).
    """

    task: Literal["subgraph", "ofa"] = "subgraph"
    strategies: list[str] = msgspec.field(default_factory=lambda: ["fedpub", "fedavg", "local"])
    rounds: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    clients: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    min_clients: Annotated[int, msgspec.Meta(ge=1)] | None = None  # default: every client
    max_clients: Annotated[int, msgspec.Meta(ge=1)] | None = None
    graph_source: str = "builtin"
    partition_mode: Literal["disjoint", "overlapping"] = "disjoint"
    seed: int = 1234
    reply_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    join_window: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    train_config: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    malicious: Annotated[int, msgspec.Meta(ge=0)] = 0
    malicious_scale: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    malicious_kind: Literal["noise", "nan", "shape", "extra-key", "inflate", "silent", "config-junk", "oversize"] = (
        "noise"
    )
    dropout: Annotated[int, msgspec.Meta(ge=0)] = 0
    dropout_round: Annotated[int, msgspec.Meta(ge=1)] = 2
    dropout_after: Annotated[float, msgspec.Meta(ge=0)] = 0.01


SIM_MS_PER_MMAC = 0.55  # onnxruntime, 1 thread, reference laptop core (measured for these subnets)


@lru_cache(maxsize=16)
def device_genome(latency_budget_ms: float, compute_speed: float, candidates: int = 48, seed: int = 0) -> str:
    """The subnet a device of this budget and speed picks in the simulator: among ``candidates``
    seeded random subnets whose *modelled* latency (MACs x SIM_MS_PER_MMAC / speed) fits, the
    largest of those within one point of the best validation accuracy (on the bundled digits
    every subnet scores 97-99%, so size is what tells devices apart). Modelled, not measured,
    so runs repeat exactly; ``edgeswarm subnet select`` measures for real."""
    import random

    from edgeswarm.learning import cost, supernet

    net = supernet.load()
    rng = random.Random(seed)
    genomes = [supernet.EDGE.smallest()] + [supernet.EDGE.random(rng) for _ in range(candidates)]
    fitting = []
    for genome in genomes:
        model = supernet.subnet(net, genome)
        macs = cost.macs(model)
        if macs / 1e6 * SIM_MS_PER_MMAC / compute_speed <= latency_budget_ms:
            fitting.append((supernet.evaluate(model, "val"), macs, genome))
    top = max(accuracy for accuracy, _, _ in fitting)
    _, _, best = max((f for f in fitting if f[0] >= top - 0.01), key=lambda f: f[1])
    return ",".join(str(int(v)) for v in best)


def attacker_app(honest, kind: str, scale: float, seed: int):
    """A ClientApp that trains honestly, then poisons its train reply.

    ``noise``: ``scale`` x N(0, 1) in place of its weights; ``nan``: NaN weights; ``shape``:
    the first tensor one row larger; ``extra-key``: one array more than the model has;
    ``inflate``: a claimed ``num-examples`` of 1e12; ``config-junk``: an honest reply with a
    1 MB config record beside it; ``oversize``: an honest reply padded with 8 MB of zeros.
    """
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

    rng = np.random.default_rng(seed)

    def app(message: Message, context) -> Message:
        reply = honest(message, context)
        if message.metadata.message_type != "train" or reply.has_error():
            return reply
        content = RecordDict(dict(reply.content.items()))
        if kind == "config-junk":
            content["junk"] = ConfigRecord({"junk": "x" * 1_000_000})
            return Message(content=content, reply_to=message)
        if kind == "oversize":
            content["padding"] = ArrayRecord([np.zeros(2_000_000, np.float32)])
            return Message(content=content, reply_to=message)
        arrays = {key: array.numpy() for key, array in reply.content[ARRAYS].items()}
        if kind == "noise":
            arrays = {k: (scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in arrays.items()}
        elif kind == "nan":
            arrays = {k: np.full_like(v, np.nan) for k, v in arrays.items()}
        elif kind == "shape":
            first = next(iter(arrays))
            arrays[first] = np.concatenate([arrays[first], arrays[first][:1]])
        elif kind == "extra-key":
            arrays["backdoor"] = np.ones(4, dtype=np.float32)
        elif kind == "inflate":
            content[METRICS] = MetricRecord({**reply.content[METRICS], NUM_EXAMPLES: 10**12})
            arrays = {k: (scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in arrays.items()}
        content[ARRAYS] = ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
        return Message(content=content, reply_to=message)

    return app


class FlExperiment(Workload):
    """Drives one run per strategy from the host and keeps what the host recorded."""

    name = "fl"
    Spec = FlSpec

    def __init__(self, spec: FlSpec, seed: int, hosts: list[SimHost]) -> None:
        super().__init__(spec, seed, hosts)
        self.clients = self.hosts[1 : spec.clients + 1]
        self.attackers = self.clients[len(self.clients) - spec.malicious :] if spec.malicious else []
        for host in self.attackers:
            host.federation_hooks = self._attacker_hooks(host)
        self.runs: dict[str, Any] = {}
        from edgeswarm.node.logs import adopt_flower

        adopt_flower()  # Flower's lines once, through our handler
        logging.getLogger("flwr").setLevel(logging.WARNING)  # per-round INFO lines drown the progress bar

    @classmethod
    def check(cls, spec: FlSpec, nodes: int) -> str | None:
        if nodes < spec.clients + 1:
            return f"key 'nodes': the fl workload needs {spec.clients + 1} (a host and the clients)"
        return None

    @classmethod
    def node_config(cls, spec: FlSpec, base: NodeConfig, index: int, nodes: int, device: DeviceProfile) -> NodeConfig:
        """Node ``index``'s config: federation on, offering client partition ``index - 1``."""
        if index > spec.clients:
            return base
        task: dict = {"num-partitions": spec.clients, "partition-id": max(0, index - 1)}
        if spec.task == "ofa":
            task["genome"] = device_genome(device.latency_budget_ms, device.compute_speed)
        else:
            task |= {"graph-source": spec.graph_source, "partition-mode": spec.partition_mode, "seed": spec.seed}
        federation = msgspec.structs.replace(
            base.federation,
            enabled=True,
            auto_join=index != HOST,
            tasks={spec.task: task},
            reply_timeout=spec.reply_timeout,
            join_window=spec.join_window,
        )
        return msgspec.structs.replace(base, federation=federation)

    def _attacker_hooks(self, host: SimHost):
        """An attacker runs the same node code; only its ClientApp poisons what it sends."""
        from edgeswarm.node.fl.catalog import TASKS
        from edgeswarm.node.fl.run_client import FederationHooks

        if self.spec.malicious_kind == "silent":  # joins, takes every task, never answers one

            async def silent(message, context):
                await trio.sleep_forever()

            return FederationHooks(async_apps={self.spec.task: silent})
        seed = derive_seed(self.seed, "fl-attacker", str(host.identity.peer_id))
        app = attacker_app(
            TASKS[self.spec.task].client_app, self.spec.malicious_kind, self.spec.malicious_scale, seed=seed
        )
        return FederationHooks(client_apps={self.spec.task: app})

    async def run(self, nursery: trio.Nursery) -> None:
        from edgeswarm.node.fl.federation import RunSpec

        spec = self.spec
        host = self.hosts[HOST]
        dropped: list[SimHost] = []
        for strategy in spec.strategies:
            for h in dropped:  # a new run starts with every client back
                await h.start(nursery)
            dropped = []
            await trio.sleep(1.0)

            def on_round(metrics, _dropped=dropped) -> None:
                if spec.dropout and metrics.round == spec.dropout_round - 1:
                    nursery.start_soon(self._drop, _dropped)

            record = await host.node.federation.host(
                RunSpec(
                    task=spec.task,
                    strategy=strategy,
                    rounds=spec.rounds,
                    min_clients=spec.min_clients or spec.clients,
                    max_clients=spec.max_clients,
                    reply_timeout=spec.reply_timeout,
                    join_window=spec.join_window,
                    train_config=dict(spec.train_config),
                    # FED-PUB's tau: 3 for disjoint, 5 for overlapping partitions (the paper's values)
                    strategy_options={"tau": 5.0 if spec.partition_mode == "overlapping" else 3.0}
                    if strategy == "fedpub"
                    else {},
                ),
                on_round=on_round,
            )
            self.runs[strategy] = record
        self.done.set()

    async def _drop(self, dropped: list[SimHost]) -> None:
        await trio.sleep(self.spec.dropout_after)
        honest = [h for h in self.clients if h not in self.attackers]
        for h in honest[: self.spec.dropout]:
            h.crash()
            dropped.append(h)

    def report(self) -> dict[str, Any]:
        final: dict[str, Any] = {"accuracy": {}, "best_round": {}, "rounds_ok": {}, "state": {}}
        series: dict[str, Any] = {}
        attackers = {str(h.identity.peer_id) for h in self.attackers}
        for strategy, record in self.runs.items():
            val, test, status = [], [], []
            for metrics in record.history:  # honest clients' own evaluations
                clients = [c for peer, c in metrics.clients.items() if peer not in attackers]
                val.append(float(np.mean([c["val-acc"] for c in clients])) if clients else None)
                test.append(float(np.mean([c["test-acc"] for c in clients])) if clients else None)
                status.append(
                    {
                        "round": metrics.round,
                        "status": metrics.status,
                        "replies": metrics.replies,
                        "failures": metrics.failures,
                        "rejected": len(metrics.rejected),
                        "dropped": len(metrics.dropped),
                        "seconds": metrics.seconds,
                    }
                )
            scored = [i for i, v in enumerate(val) if v is not None]
            best = max(scored, key=lambda i: (val[i], -i)) if scored else None
            final["accuracy"][strategy] = round(test[best], 6) if best is not None else None
            final["best_round"][strategy] = best + 1 if best is not None else None
            final["rounds_ok"][strategy] = sum(s["status"] == "ok" for s in status)
            final["state"][strategy] = record.state
            series[strategy] = {"val_acc": val, "test_acc": test, "rounds": status}
            if self.spec.task == "ofa":  # accuracy of each device kind's own subnet, last round
                by_device: dict[str, list[float]] = {}
                kind = {str(h.identity.peer_id): h.device.name for h in self.clients}
                if record.history:
                    for peer, c in record.history[-1].clients.items():
                        by_device.setdefault(kind.get(peer, "?"), []).append(c["test-acc"])
                final.setdefault("accuracy_by_device", {})[strategy] = {
                    d: round(float(np.mean(v)), 6) for d, v in sorted(by_device.items())
                }
        if self.spec.task == "ofa":
            final["subnets"] = {
                h.device.name: h.node.federation.config.tasks["ofa"]["genome"]
                for h in self.clients
                if h.node is not None
            }
        return {"final": final, "series": series}

    @staticmethod
    def plot(report: dict[str, Any], path: Path) -> Path:
        """Mean client validation and test accuracy per round, one line per strategy."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, key, title in zip(axes, ("val_acc", "test_acc"), ("validation", "test")):
            for strategy, series in report["fl_series"].items():
                values = gaps(series[key])
                ax.plot(range(1, len(values) + 1), values, label=strategy)
            ax.set_title(f"mean client {title} accuracy", fontsize=10)
            ax.set_xlabel("round")
            ax.set_ylim(0, 1.0)
        axes[0].legend(fontsize=8)
        return finish(fig, report, path)

    @staticmethod
    def summary(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (
                f"accuracy {strategy} (round {metrics['best_round'][strategy]})",
                f"{value:.4f}" if value is not None else "-",
            )
            for strategy, value in metrics.get("accuracy", {}).items()
        ]


WORKLOAD = FlExperiment
