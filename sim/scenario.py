"""Simulation scenarios: typed TOML under ``configs/sim``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from edgeswarm.node.config import ConfigError, NodeConfig, Section, convert, read_toml
from edgeswarm.node.subnet.device import DeviceProfile, load_device

from .sybils import SybilSpec
from .workload import Workload
from .workloads import WORKLOADS

MAX_LIBP2P_NODES = 64
"""Daemon processes one 2-core machine runs for a libp2p scenario (about 200 deliveries/s each)."""

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0)]


class NetworkSpec(Section):
    """Link model of the virtual network (see ``sim.virtual_network.LinkModel``), and who can
    be dialled (see ``sim.nat_model``).

    ``private_share`` of the nodes (never the bootstrap ones) sit behind NATs of kind ``nat``:
    reached through relays (public nodes, ``relays_per_node`` each, ``relay_circuit_kb`` per
    request), upgraded to direct connections by hole punching with ``hole_punch_success``
    (70% for endpoint-independent NATs in production IPFS; none behind symmetric ones).
    """

    latency_ms: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    latency_sigma: Annotated[float, msgspec.Meta(ge=0, le=3)] = 0.5
    loss: Fraction = 0.0
    gossip_degree: Annotated[int, msgspec.Meta(ge=2, le=64)] = 6
    private_share: Fraction = 0.0
    nat: Literal["endpoint-independent", "symmetric"] = "endpoint-independent"
    hole_punch_success: Fraction = 0.7
    relays_per_node: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2
    relay_circuit_kb: Annotated[int, msgspec.Meta(ge=1)] = 128


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


class ScenarioBase(Section):
    """One simulation run (``Scenario`` adds a table per workload).

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
    sybils : SybilSpec (default: none)
        Eclipse attackers among the nodes (``sim.sybils``).
    devices : table of name -> share (default: {laptop = 1.0})
        Device mix; profiles come from ``devices_dir`` (relative to the scenario file).
    <workload> : its Spec or None (default: None)
        One table per workload of ``sim.workloads.WORKLOADS`` (``grank``, ``fl``, ``lora``,
        ``semspace``); at most one is set, and the run ends when it is done.
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
    sybils: SybilSpec = msgspec.field(default_factory=SybilSpec)
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)

    @property
    def workload(self) -> tuple[type[Workload], Section] | None:
        """The workload this scenario runs and its table, or None."""
        for name, kind in WORKLOADS.items():
            spec = getattr(self, name)
            if spec is not None:
                return kind, spec
        return None


Scenario = msgspec.defstruct(
    "Scenario",
    [(name, kind.Spec | None, None) for name, kind in WORKLOADS.items()],
    bases=(ScenarioBase,),
    module=__name__,
)
Scenario.__doc__ = ScenarioBase.__doc__


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
        if scenario.sybils.fraction:
            raise ConfigError(f"{path}: key 'sybils': not supported with transport = 'libp2p'")
        if scenario.nodes > MAX_LIBP2P_NODES:
            raise ConfigError(
                f"{path}: key 'nodes': at most {MAX_LIBP2P_NODES} daemon processes with transport = 'libp2p' "
                "(use the virtual network for more)"
            )
    tables = [name for name in WORKLOADS if getattr(scenario, name) is not None]
    if len(tables) > 1:
        raise ConfigError(
            f"{path}: run one workload per scenario ({' or '.join(WORKLOADS)}), not {' and '.join(tables)}"
        )
    if scenario.workload is not None:
        kind, workload = scenario.workload
        workload = kind.resolve_paths(workload, path.parent)
        scenario = msgspec.structs.replace(scenario, **{kind.name: workload})
        problem = kind.check(workload, scenario.nodes)
        if problem:
            raise ConfigError(f"{path}: {problem}")
        if scenario.transport == "libp2p":  # the libp2p runner drives no workload
            raise ConfigError(
                f"{path}: the {kind.name} workload runs on the virtual network only; "
                "transport = 'libp2p' runs the swarm itself (membership, gossip, churn)"
            )
    devices_dir = (path.parent / scenario.devices_dir).resolve()
    devices = {name: load_device(devices_dir / f"{name}.toml") for name in scenario.devices}
    return LoadedScenario(scenario, devices)
