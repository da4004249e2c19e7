"""Reachability on the virtual network: private nodes behind NATs, circuit relays, hole punching.

A private node can dial out but cannot be dialled. A request to it goes directly when it has
a connection to the sender already (it dialled the sender), or when the pair was upgraded to
a direct connection; otherwise through one of its relays (public nodes it holds a
reservation on), two hops, counted against the relay's uplink and bounded by the circuit's
byte limit, as a real relay does (go-libp2p's default: 128 KiB). After a pair's first relayed
exchange it is upgraded (DCUtR): always when the sender is public (the private node dials it
back), and with the measured hole-punch success rate when both are private: 70% +- 7% in
production IPFS for endpoint-independent NATs (Trautwein et al. 2025, arXiv 2510.27500),
never behind symmetric NATs.

Sans-IO, like the rest of the model: the virtual network asks ``route`` and reports what
happened; randomness comes from the rng it is given.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from edgeswarm.protocols.peer_id import PeerId

DIRECT = "direct"


@dataclass
class NatModel:
    """Which nodes are private, their relays, and the pairs already upgraded to direct.

    Parameters
    ----------
    private : set of PeerId
    public : sequence of PeerId
        The nodes relays are drawn from.
    rng : random.Random
    hole_punch : float
        Chance that a hole punch between two private nodes succeeds (0 behind symmetric NATs).
    circuit_bytes : int
        Bytes one relayed request or response may carry.
    relays_per_node : int
    """

    private: set[PeerId]
    public: Sequence[PeerId]
    rng: random.Random
    hole_punch: float = 0.7
    circuit_bytes: int = 128 * 1024
    relays_per_node: int = 2
    relays: dict[PeerId, list[PeerId]] = field(default_factory=dict)
    relay_bytes: Counter[PeerId] = field(default_factory=Counter)
    over_limit: int = 0
    unreachable: int = 0
    punched: int = 0  # private pairs whose hole punch succeeded
    _dialled: set[tuple[PeerId, PeerId]] = field(default_factory=set)  # (dialler, dialled), live
    _upgraded: set[frozenset[PeerId]] = field(default_factory=set)
    _tried: set[frozenset[PeerId]] = field(default_factory=set)  # private pairs a punch was tried for

    def route(self, src: PeerId, dst: PeerId, online: Container[PeerId]) -> str | None:
        """How a request from ``src`` reaches ``dst``: ``DIRECT``, the peer id of the relay it
        goes through, or None (no relay of ``dst`` online; counted)."""
        if (
            dst not in self.private
            or (dst, src) in self._dialled
            or frozenset((src, dst)) in self._upgraded
            or src in self.relays.get(dst, ())  # the reservation is a connection
        ):
            self._dialled.add((src, dst))
            return DIRECT
        relay = self._relay_of(dst, online)
        if relay is None:
            self.unreachable += 1
        return relay

    def carry(self, relay: PeerId, size: int) -> bool:
        """Count ``size`` bytes through ``relay``; False (and counted) over the circuit's limit."""
        if size > self.circuit_bytes:
            self.over_limit += 1
            return False
        self.relay_bytes[relay] += size
        return True

    def relayed_exchange(self, src: PeerId, dst: PeerId) -> None:
        """A pair talked through a relay: try to upgrade it to a direct connection, once."""
        pair = frozenset((src, dst))
        if src not in self.private:
            self._upgraded.add(pair)  # the private side dials the public one back
        elif pair not in self._tried:
            self._tried.add(pair)
            if self.rng.random() < self.hole_punch:
                self._upgraded.add(pair)
                self.punched += 1

    def offline(self, peer: PeerId) -> None:
        """``peer`` went offline: its connections, and pairs upgraded with it, are gone."""
        self._dialled = {p for p in self._dialled if peer not in p}
        self._upgraded = {p for p in self._upgraded if peer not in p}

    def report(self) -> dict[str, float | int]:
        public = len(self.public) or 1
        tried = len(self._tried)
        return {
            "private_nodes": len(self.private),
            "relay_bytes_per_public_node": round(sum(self.relay_bytes.values()) / public),
            "relay_bytes_max": max(self.relay_bytes.values(), default=0),
            "private_pairs_punched": tried,
            "private_pairs_upgraded_share": round(self.punched / tried, 3) if tried else 0.0,
            "requests_over_circuit_limit": self.over_limit,
            "requests_unreachable": self.unreachable,
        }

    def __post_init__(self) -> None:
        for peer in sorted(self.private):
            self._reserve(peer, [p for p in self.public if p != peer])

    def _reserve(self, peer: PeerId, candidates: list[PeerId]) -> list[PeerId]:
        self.relays[peer] = self.rng.sample(candidates, min(self.relays_per_node, len(candidates)))
        return self.relays[peer]

    def _relay_of(self, peer: PeerId, online: Container[PeerId]) -> PeerId | None:
        """One of ``peer``'s relays that is online; reserved anew where all of them went away."""
        mine = [r for r in self.relays.get(peer, []) if r in online]
        if not mine:
            mine = self._reserve(peer, [p for p in self.public if p in online and p != peer])
        return mine[0] if mine else None
