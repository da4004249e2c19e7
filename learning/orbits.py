"""LEO mobility for hierarchical FL: a Walker-delta constellation, gateways, visibility.

Analytic circular orbits on a spherical, rotating Earth (no J2, no drag: a stated
simplification that keeps periods and visibility windows right to within a few percent for
LEO, which is what the round-by-round association needs). Walker delta i:T/P/F: P planes
equally spaced in right ascension, T/P satellites per plane equally spaced in mean anomaly,
a phase offset of F * 360/T degrees between neighbouring planes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MU = 3.986004418e14  # m^3/s^2, Earth's gravitational parameter
EARTH_RADIUS = 6_371_000.0  # m, spherical Earth
EARTH_RATE = 7.2921159e-5  # rad/s, sidereal rotation


@dataclass(frozen=True)
class Walker:
    planes: int = 4
    per_plane: int = 10
    altitude_m: float = 550_000.0
    inclination_deg: float = 53.0
    phasing: int = 1

    @property
    def count(self) -> int:
        return self.planes * self.per_plane

    @property
    def semi_major_axis(self) -> float:
        return EARTH_RADIUS + self.altitude_m

    @property
    def period_s(self) -> float:
        return 2 * np.pi * np.sqrt(self.semi_major_axis**3 / MU)

    def positions(self, t: float | np.ndarray) -> np.ndarray:
        """Earth-centred inertial positions, shape (satellites, 3) or (times, satellites, 3), metres."""
        t = np.asarray(t, dtype=np.float64)
        p = np.repeat(np.arange(self.planes), self.per_plane)
        s = np.tile(np.arange(self.per_plane), self.planes)
        raan = 2 * np.pi * p / self.planes
        phase = 2 * np.pi * s / self.per_plane + 2 * np.pi * self.phasing * p / self.count
        n = 2 * np.pi / self.period_s
        u = phase + n * t[..., None]  # argument of latitude (circular orbit)
        inc = np.radians(self.inclination_deg)
        a = self.semi_major_axis
        x = a * (np.cos(raan) * np.cos(u) - np.sin(raan) * np.sin(u) * np.cos(inc))
        y = a * (np.sin(raan) * np.cos(u) + np.cos(raan) * np.sin(u) * np.cos(inc))
        z = a * np.sin(u) * np.sin(inc) * np.ones_like(raan)
        return np.stack([x, y, z], axis=-1)


@dataclass(frozen=True)
class Gateway:
    name: str
    lat_deg: float
    lon_deg: float

    def position(self, t: float | np.ndarray) -> np.ndarray:
        """Inertial position at time ``t`` (the Earth turns underneath), metres."""
        t = np.asarray(t, dtype=np.float64)
        lat, lon = np.radians(self.lat_deg), np.radians(self.lon_deg) + EARTH_RATE * t
        return EARTH_RADIUS * np.stack(
            [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat) * np.ones_like(lon)], axis=-1
        )


def elevation_deg(satellites: np.ndarray, station: np.ndarray) -> np.ndarray:
    """Elevation of each satellite above the station's horizon, degrees."""
    line = satellites - station[..., None, :]
    up = station / np.linalg.norm(station, axis=-1, keepdims=True)
    sine = np.sum(line * up[..., None, :], axis=-1) / np.linalg.norm(line, axis=-1)
    return np.degrees(np.arcsin(np.clip(sine, -1, 1)))


def slant_range_m(satellites: np.ndarray, station: np.ndarray) -> np.ndarray:
    return np.linalg.norm(satellites - station[..., None, :], axis=-1)


def association(
    walker: Walker,
    gateways: list[Gateway],
    start_s: float,
    length_s: float,
    *,
    min_elevation_deg: float = 25.0,
    step_s: float = 10.0,
) -> np.ndarray:
    """a[s, g]: the share of the round [start, start + length) that satellite s is visible to
    and served by gateway g (each instant, the visible gateway at the highest elevation)."""
    times = start_s + np.arange(0.0, length_s, step_s)
    sats = walker.positions(times)  # (T, S, 3)
    elevations = np.stack([elevation_deg(sats, g.position(times)) for g in gateways], axis=-1)  # (T, S, G)
    visible = elevations >= min_elevation_deg
    best = np.argmax(np.where(visible, elevations, -np.inf), axis=-1)  # (T, S)
    served = np.zeros(visible.shape, dtype=np.float64)
    t_index, s_index = np.nonzero(visible.any(axis=-1))
    served[t_index, s_index, best[t_index, s_index]] = 1.0
    return served.mean(axis=0)


def trace_association(trace: np.ndarray) -> np.ndarray:
    """Generic mobile devices: a (time, device) array of serving gateway indexes (-1 = none),
    turned into the same a[device, gateway] shares."""
    trace = np.asarray(trace)
    gateways = int(trace.max()) + 1 if (trace >= 0).any() else 0
    return (
        np.stack([(trace == g).mean(axis=0) for g in range(gateways)], axis=-1)
        if gateways
        else np.zeros((trace.shape[1], 0))
    )
