"""What a node can train, and with which strategies: names on the wire -> learning code.

Imported only when federation is enabled, so the light core never loads torch or Flower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

import msgspec
from flwr.app import ArrayRecord, ConfigRecord
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)

from edgeswarm.learning import graph_client, jscc_client, ofa_client
from edgeswarm.learning.keys import EMBEDDING, MASK, WEIGHT
from edgeswarm.learning.strategies import FedPub, WeightSharing

from . import fl_catalog


@dataclass(frozen=True)
class FlTask:
    """A trainable task: its ClientApp, the starting model, its cost per local round, and the
    node-config keys every participant must share with the host (same data and partitioning)."""

    client_app: ClientApp
    initial_model: Callable[[dict[str, Any], str], ArrayRecord]
    reference_seconds: float  # one local round on a reference laptop core (modelled in sim)
    data_identity: Callable[[dict[str, Any]], dict[str, str]] = lambda config: {}
    side_records: tuple[str, ...] = ()  # array records its clients reply with beside the model


TASKS: dict[str, FlTask] = {
    # subgraph node classification (FED-PUB's setting); 0.1 s = one epoch + evaluation of a
    # 2-layer GCN on a Cora client here
    "subgraph": FlTask(graph_client.app, graph_client.initial_model, 0.1, graph_client.data_identity, (EMBEDDING,)),
    # each device trains its own OFA subnet inside the shared supernet (one local epoch)
    "ofa": FlTask(ofa_client.app, ofa_client.initial_model, 2.0, ofa_client.data_identity, (MASK,)),
    # a satellite's local JSCC training (SemSpaceFL); "jscc-gateway" is a gateway's regional
    # run, answered by async code on the gateway (sim.semspace_workload), not a ClientApp
    "jscc": FlTask(jscc_client.app, jscc_client.initial_model, 1.0, jscc_client.data_identity),
    "jscc-gateway": FlTask(jscc_client.app, jscc_client.initial_model, 0.0, jscc_client.data_identity),
}


class NoOptions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A strategy without options of ours."""


class FedPubOptions(NoOptions, frozen=True):
    """FED-PUB's similarity temperature (3 for disjoint, 5 for overlapping partitions)."""

    tau: Annotated[float, msgspec.Meta(gt=0)] = 3.0


class EveryJoined(TypedDict):
    min_train_nodes: int
    min_evaluate_nodes: int
    min_available_nodes: int


def _every_joined(minimum: int) -> EveryJoined:
    """Train every joined node each round; a round needs replies from at least the minimum."""
    return {"min_train_nodes": minimum, "min_evaluate_nodes": minimum, "min_available_nodes": minimum}


@dataclass(frozen=True)
class StrategyKind:
    """How to build a strategy: from the run's minimum of clients and its typed options."""

    build: Callable[[int, Any], Strategy]
    options: type[NoOptions] = NoOptions


def _plain(cls: Callable[..., Strategy], **extra: Any) -> StrategyKind:
    return StrategyKind(lambda minimum, _: cls(**_every_joined(minimum), **extra))


STRATEGIES: dict[str, StrategyKind] = {
    "fedavg": _plain(FedAvg),
    "local": _plain(FedAvg),  # clients ignore what they receive (method "local")
    "fedprox": _plain(FedProx, proximal_mu=0.01),
    "fedmedian": _plain(FedMedian),
    "fedtrimmedavg": _plain(FedTrimmedAvg, beta=fl_catalog.TRIM_BETA),
    "krum": _plain(Krum, num_malicious_nodes=fl_catalog.KRUM_MALICIOUS),
    "fedpub": StrategyKind(lambda minimum, options: FedPub(tau=options.tau, **_every_joined(minimum)), FedPubOptions),
    "weightsharing": _plain(WeightSharing),  # OFA subnets of different sizes into one supernet
    # FedAvg weighted by each reply's "weight" metric, no client-side evaluation: SemSpaceFL's
    # gateway (D x association x energy) and cloud (gateway totals) steps, and the baselines
    "weighted": StrategyKind(
        lambda minimum, _: FedAvg(
            min_train_nodes=minimum, min_available_nodes=minimum, fraction_evaluate=0.0, weighted_by_key=WEIGHT
        )
    ),
    # central DP (Flower's server-side fixed clipping around FedAvg); noise is relative to the norm
    "dp-fedavg": StrategyKind(
        lambda minimum, _: DifferentialPrivacyServerSideFixedClipping(
            FedAvg(**_every_joined(minimum)), noise_multiplier=0.1, clipping_norm=10.0, num_sampled_clients=minimum
        )
    ),
}


assert STRATEGIES.keys() == fl_catalog.STRATEGIES.keys() and TASKS.keys() == fl_catalog.TASK_STRATEGIES.keys()


def method_for(strategy: str) -> str:
    """The client-side method a strategy needs (FED-PUB masks, local-only, or plain)."""
    return {"fedpub": "fedpub", "local": "local"}.get(strategy, "fedavg")


def round_config(strategy: str, extra: dict[str, Any] | None = None) -> ConfigRecord:
    return ConfigRecord({"method": method_for(strategy), **(extra or {})})


def requirements(task: str, node_config: dict[str, Any]) -> dict[str, str]:
    """What a joiner's config must match: the host's data identity for the task."""
    return TASKS[task].data_identity(node_config)


def meets(required: dict[str, str], task: str, node_config: dict[str, Any]) -> bool:
    mine = requirements(task, node_config)  # keys outside the data identity are for join policies
    return all(mine[key] == value for key, value in required.items() if key in mine)


def make_strategy(name: str, min_clients: int, options: dict[str, Any] | None = None) -> Strategy:
    """Build strategy ``name``; ``options`` are checked against its typed options first."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} (one of {', '.join(sorted(STRATEGIES))})")
    kind = STRATEGIES[name]
    try:
        typed = msgspec.convert(options or {}, kind.options)
    except msgspec.ValidationError as exc:
        known = ", ".join(kind.options.__struct_fields__) or "none"
        raise ValueError(f"strategy {name!r}: bad option ({exc}); its options: {known}") from None
    return kind.build(min_clients, typed)
