"""The one registry of federated tasks and strategies: names on the wire -> learning code.

Light: a task names the module of its ClientApp and a strategy builds its Flower object, and
both import torch or Flower only when used. So the CLI offers ``--strategy`` choices and
refuses impossible runs from this before it asks the daemon, and the daemon checks the same
again from the same entries. Adding a strategy is one entry in ``STRATEGIES``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import msgspec

from edgeswarm.learning.keys import EMBEDDING, MASK, WEIGHT

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, ConfigRecord
    from flwr.clientapp import ClientApp
    from flwr.serverapp.strategy import Strategy

TRIM_BETA = 0.2  # fedtrimmedavg's share cut from each side
KRUM_MALICIOUS = 2  # krum's f


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
    """A strategy: what ``fl host --help`` says of it, how to build it from the run's minimum
    of clients and its typed options, and the fewest replies that let it do what its name says."""

    summary: str
    build: Callable[[int, Any], Strategy]
    options: type[NoOptions] = NoOptions
    min_clients: int = 1


def _flower(name: str, **extra: Any) -> Callable[[int, Any], Strategy]:
    """Build Flower's strategy ``name`` training every joined node, with ``extra`` arguments."""

    def build(minimum: int, _options: Any) -> Strategy:
        strategy = getattr(importlib.import_module("flwr.serverapp.strategy"), name)
        return strategy(**_every_joined(minimum), **extra)

    return build


def _fedpub(minimum: int, options: FedPubOptions) -> Strategy:
    from edgeswarm.learning.strategies import FedPub

    return FedPub(tau=options.tau, **_every_joined(minimum))


def _weight_sharing(minimum: int, _options: Any) -> Strategy:
    from edgeswarm.learning.strategies import WeightSharing

    return WeightSharing(**_every_joined(minimum))


def _weighted(minimum: int, _options: Any) -> Strategy:
    """FedAvg weighted by each reply's "weight" metric, no client-side evaluation: SemSpaceFL's
    gateway (D x association x energy) and cloud (gateway totals) steps, and the baselines."""
    from flwr.serverapp.strategy import FedAvg

    return FedAvg(min_train_nodes=minimum, min_available_nodes=minimum, fraction_evaluate=0.0, weighted_by_key=WEIGHT)


def _dp_fedavg(minimum: int, _options: Any) -> Strategy:
    """Central DP: Flower's server-side fixed clipping around FedAvg; noise relative to the norm."""
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    return DifferentialPrivacyServerSideFixedClipping(
        FedAvg(**_every_joined(minimum)), noise_multiplier=0.1, clipping_norm=10.0, num_sampled_clients=minimum
    )


STRATEGIES: dict[str, StrategyKind] = {
    "fedavg": StrategyKind("FedAvg, weighted by num-examples (McMahan et al. 2017)", _flower("FedAvg")),
    # clients ignore what they receive (method "local")
    "local": StrategyKind("no aggregation: each client keeps training its own model (baseline)", _flower("FedAvg")),
    "fedprox": StrategyKind("FedProx, proximal term mu = 0.01 (Li et al. 2020)", _flower("FedProx", proximal_mu=0.01)),
    "fedmedian": StrategyKind("coordinate-wise median (Yin et al. 2018)", _flower("FedMedian")),
    # trimmed mean cuts floor(beta * n) from each side, which is nothing below 1 / beta clients
    "fedtrimmedavg": StrategyKind(
        f"coordinate-wise trimmed mean, beta = {TRIM_BETA} per side (Yin et al. 2018)",
        _flower("FedTrimmedAvg", beta=TRIM_BETA),
        min_clients=math.ceil(1 / TRIM_BETA),
    ),
    # Krum scores each update by its n - f - 2 nearest neighbours, so n > f + 2
    "krum": StrategyKind(
        f"Krum with f = {KRUM_MALICIOUS} assumed malicious (Blanchard et al. 2017)",
        _flower("Krum", num_malicious_nodes=KRUM_MALICIOUS),
        min_clients=KRUM_MALICIOUS + 3,
    ),
    "fedpub": StrategyKind("FED-PUB personalized subgraph FL (Baek et al. 2023)", _fedpub, FedPubOptions),
    "weightsharing": StrategyKind("OFA subnets of different sizes merged into one supernet", _weight_sharing),
    "weighted": StrategyKind("FedAvg weighted by each reply's 'weight' metric (SemSpaceFL tiers)", _weighted),
    "dp-fedavg": StrategyKind("FedAvg with server-side fixed clipping and Gaussian noise (central DP)", _dp_fedavg),
}

_ROBUST = frozenset({"fedavg", "fedprox", "fedmedian", "fedtrimmedavg", "krum", "dp-fedavg"})


@dataclass(frozen=True)
class FlTask:
    """A trainable task: the learning module holding its ClientApp (``app``), starting model
    (``initial_model``) and the node-config keys every participant must share with the host
    (``data_identity``: same data and partitioning); the strategies that can train it; its cost
    per local round; and the array records its clients reply with beside the model."""

    module: str
    strategies: frozenset[str]
    reference_seconds: float  # one local round on a reference laptop core (modelled in sim)
    side_records: tuple[str, ...] = ()

    def _code(self) -> Any:
        return importlib.import_module(self.module)

    @property
    def client_app(self) -> ClientApp:
        return self._code().app

    def initial_model(self, node_config: dict[str, Any], seed_text: str) -> ArrayRecord:
        return self._code().initial_model(node_config, seed_text)

    def data_identity(self, node_config: dict[str, Any]) -> dict[str, str]:
        return self._code().data_identity(node_config)


TASKS: dict[str, FlTask] = {
    # subgraph node classification (FED-PUB's setting); 0.1 s = one epoch + evaluation of a
    # 2-layer GCN on a Cora client here. Its client keeps its own weights for "local".
    "subgraph": FlTask("edgeswarm.learning.graph_client", _ROBUST | {"local", "fedpub"}, 0.1, (EMBEDDING,)),
    # each device trains its own OFA subnet inside the shared supernet (one local epoch); it
    # replies with the whole supernet and the mask of what it trained
    "ofa": FlTask("edgeswarm.learning.ofa_client", _ROBUST | {"weightsharing"}, 2.0, (MASK,)),
    # a satellite's local JSCC training (SemSpaceFL), replying with a "weight" metric for the
    # tiers; "jscc-gateway" is a gateway's regional run, answered by async code on the gateway
    # (sim.semspace_workload), not a ClientApp
    "jscc": FlTask("edgeswarm.learning.jscc_client", _ROBUST | {"weighted"}, 1.0),
    "jscc-gateway": FlTask("edgeswarm.learning.jscc_client", _ROBUST | {"weighted"}, 0.0),
}


def check_run(task: str, strategy: str, min_clients: int) -> str | None:
    """Why a run of ``strategy`` on ``task`` with ``min_clients`` cannot work, or None."""
    if task not in TASKS:
        return f"unknown task {task!r} (one of {', '.join(TASKS)})"
    if strategy not in STRATEGIES:
        return f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})"
    if strategy not in TASKS[task].strategies:
        return f"strategy {strategy!r} cannot train task {task!r} (it can: {', '.join(sorted(TASKS[task].strategies))})"
    needed = STRATEGIES[strategy].min_clients
    if min_clients < needed:
        return (
            f"{strategy} with {min_clients} clients would be plain averaging (it needs --min-clients {needed} or more)"
        )
    return None


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


def method_for(strategy: str) -> str:
    """The client-side method a strategy needs (FED-PUB masks, local-only, or plain)."""
    return {"fedpub": "fedpub", "local": "local"}.get(strategy, "fedavg")


def round_config(strategy: str, extra: dict[str, Any] | None = None) -> ConfigRecord:
    from flwr.app import ConfigRecord

    return ConfigRecord({"method": method_for(strategy), **(extra or {})})


def requirements(task: str, node_config: dict[str, Any]) -> dict[str, str]:
    """What a joiner's config must match: the host's data identity for the task."""
    return TASKS[task].data_identity(node_config)


def meets(required: dict[str, str], task: str, node_config: dict[str, Any]) -> bool:
    mine = requirements(task, node_config)  # keys outside the data identity are for join policies
    return all(mine[key] == value for key, value in required.items() if key in mine)
