"""SemSpaceFL as a simulator workload: satellites -> moving gateways -> cloud, over the swarm.

Every tier is a Flower run of the same federation service. The cloud hosts a run of task
``jscc-gateway`` whose clients are the gateways; a gateway answers each of its cloud tasks
by hosting a one-round regional run of task ``jscc`` for the satellites it serves in that
round's orbital window, and replies with the regional model and its total weight. Both
tiers aggregate with Flower's FedAvg weighted by the replies' ``weight`` metric:
D x a x e at the gateway (SemSpaceFL) or D (hierarchical FedAvg), gateway totals at the
cloud. Satellites decide themselves whether to join (``join_policy``): visibility and
service from ``learning.orbits``, the round's energy from ``learning.hierarchy.EnergyModel``
against their battery. The cloud scores every round's model (PSNR, SSIM) on the test images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import trio

from edgeswarm.learning.keys import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, WEIGHT
from edgeswarm.node.config import NodeConfig, Section
from edgeswarm.node.subnet.device import DeviceProfile

from .determinism import derive_rng
from .host import SimHost
from .plots import finish, gaps
from .workload import Workload

CLOUD = 0
SNR_SWEEP = (0.0, 5.0, 10.0, 15.0, 20.0)  # dB: the final models' PSNR and SSIM across channel qualities


class GatewaySpec(Section):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]


def _default_gateways() -> list[GatewaySpec]:
    return [
        GatewaySpec("tokyo", 35.7, 139.7),
        GatewaySpec("delft", 52.0, 4.4),
        GatewaySpec("nairobi", -1.3, 36.8),
        GatewaySpec("santiago", -33.4, -70.7),
        GatewaySpec("hawaii", 19.8, -155.5),
    ]


class SemSpaceSpec(Section):
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
        default_factory=lambda: ["semspace", "hier_fedavg", "flat_fedavg"]
    )
    join_window: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    reply_timeout: Annotated[float, msgspec.Meta(gt=0)] = 120.0


class SemSpaceExperiment(Workload):
    name = "semspace"
    Spec = SemSpaceSpec

    def __init__(self, spec: SemSpaceSpec, seed: int, hosts: list[SimHost]) -> None:
        from edgeswarm.learning.hierarchy import EnergyModel
        from edgeswarm.learning.orbits import Gateway, Walker

        super().__init__(spec, seed, hosts)
        hosts = self.hosts
        self.walker = Walker(spec.planes, spec.per_plane, spec.altitude_km * 1000, spec.inclination_deg, spec.phasing)
        self.stations = [Gateway(g.name, g.lat, g.lon) for g in spec.gateways]
        self.gateway_hosts = hosts[1 : 1 + len(self.stations)]
        self.satellite_hosts = hosts[1 + len(self.stations) :]
        rng = derive_rng(seed, "semspace-battery")
        self.battery = [spec.battery_j * rng.uniform(0.5, 1.5) for _ in self.satellite_hosts]
        self.energy_model = EnergyModel()
        self._shares: dict[float, np.ndarray] = {}
        self._booked: set[tuple[str, float, int, int]] = set()
        self.energy: dict[str, dict[int, float]] = {}  # scheme -> round -> joules spent by satellites
        self.participation: dict[str, dict[str, list[int]]] = {}  # scheme -> gateway -> satellites per round
        self.series: dict[str, dict[str, list[float]]] = {}
        self.bytes_per_round: dict[str, float] = {}
        self.versus_snr: dict[str, dict[float, tuple[float, float]]] = {}
        for index, host in enumerate(self.gateway_hosts):
            host.federation_hooks = self._gateway_hooks(host, index)
        for number, host in enumerate(self.satellite_hosts):
            host.federation_hooks = self._satellite_hooks(number)
        from edgeswarm.node.logs import adopt_flower

        adopt_flower()  # Flower's lines once, through our handler
        logging.getLogger("flwr").setLevel(logging.ERROR)  # per-round lines and expected warnings

    @classmethod
    def check(cls, spec: SemSpaceSpec, nodes: int) -> str | None:
        needed = 1 + len(spec.gateways) + spec.planes * spec.per_plane
        if nodes != needed:
            return f"key 'nodes': the semspace workload needs {needed} (cloud, gateways, satellites)"
        return None

    @classmethod
    def node_config(
        cls, spec: SemSpaceSpec, base: NodeConfig, index: int, nodes: int, device: DeviceProfile
    ) -> NodeConfig:
        """The cloud hosts, gateways join the cloud's runs and host regional ones, satellites join."""
        satellites = spec.planes * spec.per_plane
        shared = {"num-partitions": satellites}
        if index == CLOUD:
            tasks, auto = {"jscc-gateway": shared, "jscc": shared}, False
        elif index <= len(spec.gateways):
            tasks, auto = {"jscc-gateway": shared, "jscc": shared}, True
        else:
            tasks, auto = {"jscc": shared | {"partition-id": index - 1 - len(spec.gateways)}}, True
        federation = msgspec.structs.replace(
            base.federation,
            enabled=True,
            auto_join=auto,
            tasks=tasks,
            join_window=spec.join_window,
            reply_timeout=spec.reply_timeout,
        )
        return msgspec.structs.replace(base, federation=federation)

    # ---- satellites ------------------------------------------------------------------
    def shares(self, epoch: float) -> np.ndarray:
        from edgeswarm.learning.orbits import association

        if epoch not in self._shares:
            self._shares[epoch] = association(
                self.walker, self.stations, epoch, self.spec.round_s, min_elevation_deg=self.spec.min_elevation_deg
            )
        return self._shares[epoch]

    def _satellite_hooks(self, number: int):
        """Satellite ``number`` joins a regional run when it is served and can afford it."""
        from edgeswarm.node.fl.run_client import FederationHooks

        def policy(announce) -> dict[str, Any] | None:
            scheme = announce.requirements.get("scheme")
            if scheme == "flat_fedavg":
                return {"association": 1.0, "energy": 1.0}  # ideal connectivity
            if "gateway" not in announce.requirements:
                return None
            epoch = float(announce.requirements["epoch"])
            shares = self.shares(epoch)[number]
            g = [s.name for s in self.stations].index(announce.requirements["gateway"])
            if shares[g] <= 0 or (scheme == "hier_fedavg" and g != int(np.argmax(shares))):
                return None
            cost = self._cost(epoch, number, g)
            if cost > self.battery[number]:
                return None  # cannot afford the round: skip it, whatever the weighting
            self._spend(scheme, epoch, number, g)
            if scheme == "hier_fedavg":
                return {"association": 1.0, "energy": 1.0}  # weight D only
            return {"association": float(shares[g]), "energy": 1.0 - cost / self.battery[number]}

        return FederationHooks(join_policy=policy)

    def _cost(self, epoch: float, number: int, g: int) -> float:
        from edgeswarm.learning.orbits import slant_range_m

        times = epoch + np.arange(0.0, self.spec.round_s, 30.0)
        distance = slant_range_m(self.walker.positions(times)[:, number : number + 1], self.stations[g].position(times))
        bits = 8 * 4 * 82_000  # the JSCC model's float32 weights, one upload
        work = self.spec.local_steps * 32
        return self.energy_model.computation_j(work, 1) + self.energy_model.communication_j(bits, float(distance.min()))

    def _spend(self, scheme: str, epoch: float, number: int, g: int) -> None:
        """Book a satellite's energy for a regional round once (the policy is asked twice)."""
        if (scheme, epoch, number, g) in self._booked:
            return
        self._booked.add((scheme, epoch, number, g))
        round_number = int(epoch // self.spec.round_s)
        ledger = self.energy.setdefault(scheme, {})
        ledger[round_number] = ledger.get(round_number, 0.0) + self._cost(epoch, number, g)

    # ---- gateways --------------------------------------------------------------------
    def _gateway_hooks(self, host: SimHost, index: int):
        """Gateway ``index`` answers each cloud task with a regional run of its own."""
        from flwr.app import ArrayRecord, Error, Message, MetricRecord, RecordDict

        from edgeswarm.node.fl.federation import FederationHooks, RunSpec

        name = self.stations[index].name
        spec = self.spec

        async def regional(message: Message, context) -> Message:
            federation = host.node.federation  # the gateway's running node (it may have restarted)
            config = message.content[CONFIG]
            scheme = str(config["scheme"])
            epoch = (int(config["server-round"]) - 1) * spec.round_s
            record = await federation.host(
                RunSpec(
                    task="jscc",
                    strategy="weighted",
                    rounds=1,
                    min_clients=1,
                    join_window=spec.join_window,
                    reply_timeout=spec.reply_timeout,
                    requirements={"scheme": scheme, "gateway": name, "epoch": repr(epoch)},
                    train_config={
                        "local-steps": spec.local_steps,
                        "snr-db": spec.snr_db,
                        "channel": spec.channel,
                        "weighting": "semspace" if scheme == "semspace" else "data",
                    },
                ),
                initial=message.content[ARRAYS],
            )
            served = record.history[-1].clients_train if record.history else {}
            self.participation.setdefault(scheme, {}).setdefault(name, []).append(len(served))
            arrays = federation.models.pop(record.run_id, None)
            if record.state != "done" or record.history[-1].status != "ok" or arrays is None:
                return Message(Error(code=4, reason=f"{name}: no satellite served this round"), reply_to=message)
            weight = sum(c["weight"] for c in served.values())
            samples = sum(c[NUM_EXAMPLES] for c in served.values())
            metrics = MetricRecord({NUM_EXAMPLES: int(samples), WEIGHT: float(weight), "satellites": len(served)})
            return Message(
                content=RecordDict({ARRAYS: ArrayRecord(arrays.to_torch_state_dict()), METRICS: metrics}),
                reply_to=message,
            )

        # a gateway is a client of the cloud's runs only, never a satellite of a regional run
        return FederationHooks(
            async_apps={"jscc-gateway": regional},
            join_policy=lambda announce: {} if announce.task == "jscc-gateway" else None,
        )

    # ---- the cloud -------------------------------------------------------------------
    async def run(self, nursery: trio.Nursery) -> None:
        from edgeswarm.learning.jscc import JSCC, images, quality
        from edgeswarm.node.fl.federation import RunSpec

        spec = self.spec
        test = images()["test"]

        def evaluate(arrays) -> dict[str, float]:
            model = JSCC()
            model.load_state_dict(arrays.to_torch_state_dict())
            value, structure = quality(model, test, spec.snr_db, spec.channel)
            return {"psnr": value, "ssim": structure}

        cloud = self.hosts[CLOUD].node.federation
        for scheme in spec.schemes:
            await trio.sleep(2.0)
            sent_before = sum(sum(h.counters().get("bytes_out", {}).values()) for h in self.hosts)
            flat = scheme == "flat_fedavg"
            record = await cloud.host(
                RunSpec(
                    task="jscc" if flat else "jscc-gateway",
                    strategy="weighted",
                    rounds=spec.rounds,
                    min_clients=1,
                    join_window=spec.join_window,
                    reply_timeout=4 * spec.reply_timeout if not flat else spec.reply_timeout,
                    requirements={"scheme": scheme},
                    train_config={
                        "scheme": scheme,
                        "local-steps": spec.local_steps,
                        "snr-db": spec.snr_db,
                        "channel": spec.channel,
                        "weighting": "data",
                    },
                ),
                evaluate=evaluate,
            )
            sent = sum(sum(h.counters().get("bytes_out", {}).values()) for h in self.hosts) - sent_before
            self.bytes_per_round[scheme] = sent / max(len(record.history), 1)
            if flat:
                self.energy[scheme] = {
                    r.round - 1: sum(self._flat_cost(p) for p in r.clients_train) for r in record.history
                }
            final_model = cloud.models.get(record.run_id)
            if final_model is not None:  # the final model across channel qualities
                model = JSCC()
                model.load_state_dict(final_model.to_torch_state_dict())
                self.versus_snr[scheme] = {snr: quality(model, test, snr, spec.channel) for snr in SNR_SWEEP}
            self.series[scheme] = {
                "psnr": [r.central.get("psnr") for r in record.history],
                "ssim": [r.central.get("ssim") for r in record.history],
                # satellites whose update reached the cloud (through gateways, or directly)
                "satellites": [
                    int(sum(c.get("satellites", 1) for c in r.clients_train.values())) for r in record.history
                ],
            }
        self.done.set()

    def _flat_cost(self, peer: str) -> float:
        """Flat FedAvg's links are ideal: only its computation costs energy."""
        return self.energy_model.computation_j(self.spec.local_steps * 32, 1)

    def report(self) -> dict[str, Any]:
        final = {
            "psnr_final": {
                s: round(v["psnr"][-1], 4) if v["psnr"] and v["psnr"][-1] is not None else None
                for s, v in self.series.items()
            },
            "ssim_final": {
                s: round(v["ssim"][-1], 4) if v["ssim"] and v["ssim"][-1] is not None else None
                for s, v in self.series.items()
            },
            "energy_j_per_round": {
                s: round(float(sum(v.values())) / self.spec.rounds, 2) for s, v in self.energy.items()
            },
            "bytes_per_round": {s: int(v) for s, v in self.bytes_per_round.items()},
            "psnr_vs_snr": {
                s: {f"{snr:g}": round(v[0], 3) for snr, v in d.items()} for s, d in self.versus_snr.items()
            },
            "ssim_vs_snr": {
                s: {f"{snr:g}": round(v[1], 4) for snr, v in d.items()} for s, d in self.versus_snr.items()
            },
            "satellites_per_gateway_round": {
                s: {g: round(float(np.mean(v)), 2) for g, v in sorted(per.items())}
                for s, per in self.participation.items()
            },
        }
        series = {
            s: {k: [round(x, 4) if x is not None else None for x in v] for k, v in d.items()}
            for s, d in self.series.items()
        }
        return {"final": final, "series": series}

    @staticmethod
    def plot(report: dict[str, Any], path: Path) -> Path:
        """PSNR and SSIM of the cloud model per round, and satellites trained per round, per scheme."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for scheme, series in report["semspace_series"].items():
            rounds = range(1, len(series["psnr"]) + 1)
            axes[0].plot(rounds, gaps(series["psnr"]), label=scheme)
            axes[1].plot(rounds, gaps(series["ssim"]), label=scheme)
            axes[2].plot(rounds, series["satellites"], label=scheme)
        for ax, title in zip(axes, ("PSNR (dB)", "SSIM", "satellites trained per round")):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("round")
        axes[0].legend(fontsize=8)
        return finish(fig, report, path)

    @staticmethod
    def summary(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [
            (f"PSNR {scheme} (dB)", f"{value:.2f}" if value is not None else "-")
            for scheme, value in metrics.get("psnr_final", {}).items()
        ]
        return rows + [
            (f"energy per round {scheme} (J)", f"{value:.1f}")
            for scheme, value in metrics.get("energy_j_per_round", {}).items()
        ]


WORKLOAD = SemSpaceExperiment
