"""Simulation scenarios: typed TOML under ``configs/sim``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from edgeswarm.node.config import ConfigError, NodeConfig, Section, convert, read_toml
from edgeswarm.node.device import DeviceProfile, load_device

MAX_LIBP2P_NODES = 64
"""Daemon processes one 2-core machine runs for a libp2p scenario (about 200 deliveries/s each)."""

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0)]


class NetworkSpec(Section):
    """Link model of the virtual network (see ``sim.virtual_network.LinkModel``)."""

    latency_ms: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    latency_sigma: Annotated[float, msgspec.Meta(ge=0, le=3)] = 0.5
    loss: Fraction = 0.0
    gossip_degree: Annotated[int, msgspec.Meta(ge=2, le=64)] = 6


class ChurnSpec(Section):
    """A ``fraction`` of non-bootstrap nodes alternate up/down between ``start`` and ``end``.

    Up and down times are exponential with means ``mean_up`` and ``mean_down`` seconds; at
    ``end`` every churning node is brought back up.
    """

    fraction: Fraction = 0.0
    start: Seconds = 0.0
    end: Seconds = 0.0
    mean_up: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    mean_down: Annotated[float, msgspec.Meta(gt=0)] = 60.0


class PartitionSpec(Section):
    """Between ``start`` and ``end`` the nodes are split at random into ``groups``."""

    start: Seconds
    end: Seconds
    groups: Annotated[int, msgspec.Meta(ge=2, le=64)] = 2


class GRankWorkload(Section):
    """The G-Rank experiment of Gold and Pouwelse (2023), generated.

    A catalog of ``items`` with 1 to ``max_tags`` of ``tags`` each and Zipf(``zipf``)
    popularity; every node holds a random ``local_share`` of it. After a warm-up of one
    random matching click per tag, ``queries`` single-tag queries come from random nodes,
    ``query_interval`` virtual seconds apart; every ``eval_every`` queries ``eval_nodes``
    random nodes rank every tag by each method. Click models: ``top`` clicks the first
    result (the paper's); ``cascade`` scans down, examining position p with probability
    ``cascade_decay``^p and clicking with probability 0.9 * relevance / 3.

    Attacks (the paper's), by the last ``attackers`` nodes, which run the same node code:
    ``targeted_sybil``: they come online at query ``attack_join`` and from query
    ``attack_start`` each issue ``attack_queries`` queries for the most queried tag, all
    clicking the same bottom result (the least popular item with that tag); ``inflation``: from ``attack_start`` each makes ``attack_queries``
    random clicks (random tag, random item); ``epic_sybil``: as targeted, but the attackers
    are there from the start (set ``attackers`` to 75% of the nodes for the paper's case).
    """

    items: Annotated[int, msgspec.Meta(ge=2, le=100_000)] = 256
    tags: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 39
    max_tags: Annotated[int, msgspec.Meta(ge=1, le=16)] = 3
    zipf: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    local_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.1
    queries: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    query_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.1
    eval_every: Annotated[int, msgspec.Meta(ge=1)] = 100
    eval_nodes: Annotated[int, msgspec.Meta(ge=1)] = 5
    click_model: Literal["top", "cascade"] = "top"
    cascade_decay: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.7
    attack: Literal["none", "targeted_sybil", "inflation", "epic_sybil"] = "none"
    attackers: Annotated[int, msgspec.Meta(ge=0)] = 10
    attack_join: Annotated[int, msgspec.Meta(ge=0)] = 2500
    attack_start: Annotated[int, msgspec.Meta(ge=0)] = 5000
    attack_queries: Annotated[int, msgspec.Meta(ge=1)] = 100


class FlWorkload(Section):
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
    ("shape"), an extra array ("extra-key"), or noise claiming 1e12 examples ("inflate"). ``dropout``: that many clients crash ``dropout_after`` virtual seconds into round
    ``dropout_round`` of every run and stay down; the round must complete without them.
    """

    task: Literal["subgraph", "ofa"] = "subgraph"
    strategies: list[str] = msgspec.field(default_factory=lambda: ["fedpub", "fedavg", "local"])
    rounds: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    clients: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    min_clients: Annotated[int, msgspec.Meta(ge=1)] | None = None  # default: every client
    graph_source: str = "builtin"
    partition_mode: Literal["disjoint", "overlapping"] = "disjoint"
    seed: int = 1234
    reply_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    join_window: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    train_config: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    malicious: Annotated[int, msgspec.Meta(ge=0)] = 0
    malicious_scale: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    malicious_kind: Literal["noise", "nan", "shape", "extra-key", "inflate"] = "noise"
    dropout: Annotated[int, msgspec.Meta(ge=0)] = 0
    dropout_round: Annotated[int, msgspec.Meta(ge=1)] = 2
    dropout_after: Annotated[float, msgspec.Meta(ge=0)] = 0.01


class LoraWorkload(Section):
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


class GatewaySpec(Section):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]


def _default_gateways() -> list[GatewaySpec]:
    return [GatewaySpec("tokyo", 35.7, 139.7), GatewaySpec("delft", 52.0, 4.4), GatewaySpec("nairobi", -1.3, 36.8),
            GatewaySpec("santiago", -33.4, -70.7), GatewaySpec("hawaii", 19.8, -155.5)]


class SemSpaceWorkload(Section):
    """SemSpaceFL: LEO satellites train a JSCC model under moving gateways, gateways under a cloud.

    Node 0 is the cloud, nodes 1..len(gateways) the gateways, the rest the satellites of a
    Walker-delta constellation (``planes`` x ``per_plane``). Cloud round r stands for orbital
    time r x ``round_s``: a satellite joins gateway g's regional run when it is visible to
    and served by g during that window (``learning.orbits.association``) and its battery
    (``battery_j`` per round, x U(0.5, 1.5) per satellite) affords the round's computation
    and transmission (in both hierarchical schemes); its weight is D x a x e with e the battery
    share left. Baselines in the same run: ``hier_fedavg`` (each satellite under the gateway
    that served it most, weight D) and ``flat_fedavg`` (every satellite straight to the cloud
    every round, weight D, ideal links and no battery limit).
    """

    planes: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    per_plane: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    altitude_km: Annotated[float, msgspec.Meta(ge=200, le=2000)] = 550.0
    inclination_deg: Annotated[float, msgspec.Meta(ge=0, le=180)] = 53.0
    phasing: Annotated[int, msgspec.Meta(ge=0)] = 1
    gateways: list[GatewaySpec] = msgspec.field(default_factory=_default_gateways)
    min_elevation_deg: Annotated[float, msgspec.Meta(ge=0, lt=90)] = 25.0
    rounds: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    round_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    local_steps: Annotated[int, msgspec.Meta(ge=1)] = 10
    snr_db: float = 10.0
    channel: Literal["awgn", "rayleigh"] = "awgn"
    battery_j: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    schemes: list[Literal["semspace", "hier_fedavg", "flat_fedavg"]] = msgspec.field(
        default_factory=lambda: ["semspace", "hier_fedavg", "flat_fedavg"])
    join_window: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    reply_timeout: Annotated[float, msgspec.Meta(gt=0)] = 120.0


class Scenario(Section):
    """One simulation run.

    Parameters
    ----------
    name : str
    nodes : int
    duration : float
        Virtual seconds to run.
    seed : int (default: 0)
    bootstrap : int (default: 3)
        The first ``bootstrap`` nodes are every other node's bootstrap peers.
    join_window : float (default: 30.0)
        Non-bootstrap nodes start at uniform times in [0, join_window].
    sample_interval : float (default: 10.0)
        Virtual seconds between observations of the swarm.
    store : "memory" or "files" (default: "memory")
        Node stores in memory, or one SQLite file per node under ``OUT/nodes``.
    transport : "virtual" or "libp2p" (default: "virtual")
        ``libp2p`` runs each node as a real daemon process on 127.0.0.1 and ``duration``
        is then wall-clock seconds; link model and partitions do not apply there.
    devices : table of name -> share (default: {laptop = 1.0})
        Device mix; profiles come from ``devices_dir`` (relative to the scenario file).
    grank : GRankWorkload or None (default: None)
        Run the G-Rank search workload; the run ends when its queries are done.
    fl : FlWorkload or None (default: None)
        Run federated rounds; the run ends when every strategy's run is done.
    lora : LoraWorkload or None (default: None)
        Exchange and merge LoRA deltas; the run ends when every node has merged.
    semspace : SemSpaceWorkload or None (default: None)
        Hierarchical satellite FL; the run ends when every scheme's rounds are done.
    """

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    nodes: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    duration: Annotated[float, msgspec.Meta(gt=0)]
    seed: int = 0
    bootstrap: Annotated[int, msgspec.Meta(ge=1)] = 3
    join_window: Seconds = 30.0
    sample_interval: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    store: Literal["memory", "files"] = "memory"
    transport: Literal["virtual", "libp2p"] = "virtual"
    devices: dict[str, Annotated[float, msgspec.Meta(gt=0)]] = msgspec.field(default_factory=lambda: {"laptop": 1.0})
    devices_dir: str = "../devices"
    network: NetworkSpec = msgspec.field(default_factory=NetworkSpec)
    churn: ChurnSpec = msgspec.field(default_factory=ChurnSpec)
    partitions: list[PartitionSpec] = msgspec.field(default_factory=list)
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    grank: GRankWorkload | None = None
    fl: FlWorkload | None = None
    lora: LoraWorkload | None = None
    semspace: SemSpaceWorkload | None = None


class LoadedScenario(msgspec.Struct, frozen=True):
    scenario: Scenario
    devices: dict[str, DeviceProfile]


def load_scenario(path: Path, *, seed: int | None = None, nodes: int | None = None) -> LoadedScenario:
    """Read a scenario and its device profiles; ``seed``/``nodes`` override the file."""
    raw = read_toml(path)
    if seed is not None:
        raw["seed"] = seed
    if nodes is not None:
        raw["nodes"] = nodes
    scenario = convert(raw, Scenario, str(path))
    if scenario.bootstrap > scenario.nodes:
        raise ConfigError(f"{path}: key 'bootstrap': {scenario.bootstrap} exceeds nodes ({scenario.nodes})")
    if scenario.transport == "libp2p":
        if scenario.partitions:
            raise ConfigError(f"{path}: key 'partitions': not supported with transport = 'libp2p'")
        if scenario.nodes > MAX_LIBP2P_NODES:
            raise ConfigError(
                f"{path}: key 'nodes': at most {MAX_LIBP2P_NODES} daemon processes with transport = 'libp2p' "
                "(use the virtual network for more)"
            )
    if scenario.fl is not None and scenario.nodes < scenario.fl.clients + 1:
        raise ConfigError(f"{path}: key 'nodes': the fl workload needs {scenario.fl.clients + 1} (a host and the clients)")
    if sum(w is not None for w in (scenario.fl, scenario.grank, scenario.lora, scenario.semspace)) > 1:
        raise ConfigError(f"{path}: run one workload per scenario (grank, fl, lora or semspace)")
    if scenario.semspace is not None:
        needed = 1 + len(scenario.semspace.gateways) + scenario.semspace.planes * scenario.semspace.per_plane
        if scenario.nodes != needed:
            raise ConfigError(f"{path}: key 'nodes': the semspace workload needs {needed} (cloud, gateways, satellites)")
    devices_dir = (path.parent / scenario.devices_dir).resolve()
    devices = {name: load_device(devices_dir / f"{name}.toml") for name in scenario.devices}
    return LoadedScenario(scenario, devices)

