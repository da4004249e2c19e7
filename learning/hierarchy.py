"""Two-tier aggregation of SemSpaceFL, its energy model, and the two baselines.

Gateway step: w_g = sum_s pi_sg w_s with pi_sg proportional to D_s * a_sg * e_s (data size,
association share this round, energy factor). Cloud step: w = sum_g rho_g w_g with rho_g
proportional to the gateway's total weight sum_s D_s a_sg e_s. A satellite with a_sg = 0
everywhere, or that cannot afford the round (e_s = 0), contributes nothing. Baselines:
hierarchical FedAvg (each satellite under the gateway that served it most, weights D_s) and
flat FedAvg over every satellite with ideal connectivity. Assumptions of ours where the
paper is silent are named in the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .weighted import weighted_sum

BOLTZMANN = 1.380649e-23
LIGHT = 299_792_458.0


def semspace_weights(samples: np.ndarray, share: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pi[s, g], rho[g]): gateway and cloud weights; gateways with no weight get rho = 0."""
    raw = np.asarray(samples, float)[:, None] * np.asarray(share, float) * np.asarray(energy, float)[:, None]
    totals = raw.sum(axis=0)
    pi = np.divide(raw, totals, out=np.zeros_like(raw), where=totals > 0)
    rho = totals / totals.sum() if totals.sum() > 0 else np.zeros_like(totals)
    return pi, rho


def hier_fedavg_weights(samples: np.ndarray, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical FedAvg: a satellite belongs to the gateway that served it most this round
    (if any), weights by data size only."""
    share = np.asarray(share, float)
    member = np.zeros_like(share)
    seen = share.max(axis=1) > 0
    member[np.nonzero(seen)[0], share[seen].argmax(axis=1)] = 1.0
    return semspace_weights(samples, member, np.ones(len(samples)))


def aggregate(
    models: list[dict[str, np.ndarray]], pi: np.ndarray, rho: np.ndarray, fallback: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Cloud model from satellite models through the gateways; ``fallback`` if nobody counts."""
    if rho.sum() <= 0:
        return {k: v.copy() for k, v in fallback.items()}
    served = [g for g in range(pi.shape[1]) if rho[g] > 0]
    gateways = [weighted_sum(models, pi[:, g]) for g in served]
    return weighted_sum(gateways, rho[served])


def flat_fedavg(models: list[dict[str, np.ndarray]], samples: np.ndarray) -> dict[str, np.ndarray]:
    return weighted_sum(models, np.asarray(samples, float) / np.sum(samples))


@dataclass(frozen=True)
class EnergyModel:
    """Per-round energy of a satellite (assumed values for a small LEO satellite).

    Computation: kappa * cycles * f^2 (effective switched capacitance kappa, CPU frequency f).
    Communication: transmit power * bits / rate, rate = bandwidth * log2(1 + SNR) from a
    free-space link budget at the slant range to the serving gateway.
    """

    kappa: float = 1e-28
    cpu_hz: float = 1.5e9
    cycles_per_sample: float = 2e7
    tx_power_w: float = 5.0
    antenna_gain_db: float = 30.0  # satellite and gateway antennas together
    carrier_hz: float = 20e9  # Ka band
    bandwidth_hz: float = 50e6
    noise_temperature_k: float = 500.0

    def computation_j(self, samples: int, epochs: int) -> float:
        return self.kappa * self.cycles_per_sample * samples * epochs * self.cpu_hz**2

    def rate_bps(self, distance_m: float) -> float:
        path_loss = (4 * np.pi * distance_m * self.carrier_hz / LIGHT) ** 2
        received = self.tx_power_w * 10 ** (self.antenna_gain_db / 10) / path_loss
        noise = BOLTZMANN * self.noise_temperature_k * self.bandwidth_hz
        return self.bandwidth_hz * np.log2(1 + received / noise)

    def communication_j(self, bits: float, distance_m: float) -> float:
        return self.tx_power_w * bits / self.rate_bps(distance_m)
