"""Min-wise peer samplers that an attacker cannot bias by volume, as a sans-IO state machine.

Cyclon trusts what it is sent: fifty Sybil identities that shuffle hard fill a whole view.
Samplers, after Brahms (Bortnikov et al., PODC 2008) and BASALT (Auvolat et al., Middleware
2023), keep a sample that volume cannot buy:

- each slot has a secret random seed and keeps, of every peer it has been offered, the one
  whose *rank* under that seed is lowest. Offering a peer a thousand times is the same as
  offering it once, so what fills a slot is a uniform draw from the *set* of peers seen, not
  from the stream;
- the rank is hierarchical by network address (BASALT): a slot first picks the lowest ranked
  /16 network, then /24 in it, then address, then identity. One machine's fifty keys share
  one /16 and so have one chance between them, like one peer;
- a descriptor ranks by its *worst* address, so listing addresses one does not own can only
  hurt. Descriptors with no address (a virtual network, a peer known only by its id) all
  share one group and rank by identity alone;
- a relayed address (``.../p2p/RELAY/p2p-circuit``) ranks by its relay's address: nodes
  behind one relay share its group, as nodes behind one NAT share its public address;
- slots are reseeded one at a time in rotation (BASALT's reset), so a dead or departed peer
  cannot hold a slot forever and a fresh draw happens continuously.

No network, no clock: the membership service offers what it hears, removes peers that fail,
and asks which peer to check next.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from ..peer_id import PeerId
from .messages import Descriptor

Rank = tuple[int, int, int, int]

UNADDRESSED = ("unaddressed", "unaddressed", "unaddressed")
"""The address group of a descriptor that names no address."""


def address_groups(addr: str) -> tuple[str, str, str]:
    """The /16, /24 and host of ``addr`` (IPv6: /32, /48, /64), as keys; a relayed address
    counts as its relay's; a DNS name is its own group; anything else is the text itself."""
    if "/p2p-circuit" in addr:
        addr = addr.split("/p2p-circuit", 1)[0]
    parts = addr.split("/")
    if len(parts) >= 3 and parts[1] in ("ip4", "ip6"):
        try:
            ip = ipaddress.ip_address(parts[2])
        except ValueError:
            return (addr, addr, addr)
        if ip.version == 4:
            octets = parts[2].split(".")
            return (".".join(octets[:2]), ".".join(octets[:3]), parts[2])
        full = ip.exploded.split(":")
        return (":".join(full[:2]), ":".join(full[:3]), ":".join(full[:4]))
    if len(parts) >= 3 and parts[1] in ("dns", "dns4", "dns6", "dnsaddr"):
        return (parts[2], parts[2], parts[2])
    return (addr, addr, addr)


def descriptor_groups(d: Descriptor) -> list[tuple[str, str, str]]:
    """Every address group ``d`` claims (``UNADDRESSED`` when it claims none)."""
    return [address_groups(a) for a in d.addrs] or [UNADDRESSED]


@dataclass(slots=True)
class _Slot:
    seed: bytes
    held: Descriptor | None = None
    rank: Rank | None = None


@dataclass(frozen=True, slots=True)
class _Kept:
    rank: Rank
    descriptor: Descriptor
    networks: frozenset[str]


class Samplers:
    """``slots`` min-wise samplers over every peer offered, and a history to refill them.

    The history is a min-wise sample too: when full, it drops the highest ranked peer (under
    one more secret seed) of the network with the most peers in it. A flood of new keys
    from one network therefore evicts only that network's peers, and a flood from many
    networks evicts by rank, not by arrival. It is what a reseeded or emptied slot is
    refilled from, and what tops up a sample.

    Parameters
    ----------
    local : PeerId
        Never sampled.
    slots : int
        How many samplers.
    rng : random.Random
        Draws the secret seeds (seeded in the simulator, so runs reproduce).
    history : int (default: 1024)
        Peers kept to refill slots from.
    """

    def __init__(self, local: PeerId, slots: int, rng: random.Random, *, history: int = 1024) -> None:
        if slots < 1 or history < 1:
            raise ValueError(f"slots and history must be at least 1, got {slots} and {history}")
        self._local = local
        self._rng = rng
        self._slots = [_Slot(self._new_seed()) for _ in range(slots)]
        self._history_seed = self._new_seed()
        self._history_size = history
        self._history: dict[PeerId, _Kept] = {}
        self._next_reseed = 0
        self._next_check = 0
        self._version = 0  # bumped on every change, so samples are computed once per state
        self._cached: tuple[int, int, list[Descriptor]] | None = None

    def _new_seed(self) -> bytes:
        return self._rng.getrandbits(128).to_bytes(16, "big")

    # -- observation -------------------------------------------------------------------
    def peers(self) -> list[Descriptor]:
        """The distinct peers the slots hold, in slot order."""
        held = {s.held.peer: s.held for s in self._slots if s.held is not None}
        return list(held.values())

    def __contains__(self, peer: object) -> bool:
        return any(s.held is not None and s.held.peer == peer for s in self._slots)

    def seen(self) -> int:
        """How many peers the history holds."""
        return len(self._history)

    def history(self) -> list[Descriptor]:
        """The history, lowest ranked first."""
        return [kept.descriptor for kept in sorted(self._history.values(), key=lambda kept: kept.rank)]

    def sample(self, size: int) -> list[Descriptor]:
        """``size`` distinct peers: those the slots hold, then the history's lowest ranked.

        Slots share winners, so alone they hold fewer distinct peers than there are slots.
        The top-up takes one peer per /16 network first, and no network gets more than its
        fair share of the sample (``size`` over the networks in the history): the history
        ranks a network's peers side by side, and one machine's keys must not fill a view
        while the node still knows few others. A smaller view is better than a captured one.
        """
        if self._cached is not None and self._cached[:2] == (self._version, size):
            return list(self._cached[2])
        chosen = {d.peer: d for d in self.peers()[:size]}
        used: dict[str, int] = {}
        for d in chosen.values():
            for network in _networks(d):
                used[network] = used.get(network, 0) + 1
        ranked = sorted(self._history.values(), key=lambda kept: kept.rank)
        networks = {n for kept in ranked for n in kept.networks}
        fair = -(-size // max(len(networks), 1))
        for limit in (1, fair):
            for kept in ranked:
                if len(chosen) >= size:
                    break
                peer = kept.descriptor.peer
                if peer in chosen or any(used.get(n, 0) >= limit for n in kept.networks):
                    continue
                chosen[peer] = kept.descriptor
                for network in kept.networks:
                    used[network] = used.get(network, 0) + 1
        sample = list(chosen.values())
        self._cached = (self._version, size, sample)
        return list(sample)

    def next_to_check(self, size: int) -> Descriptor | None:
        """The peer of ``sample(size)`` to contact next, in rotation, so dead ones are found."""
        sample = self.sample(size)
        if not sample:
            return None
        self._next_check = (self._next_check + 1) % len(sample)
        return sample[self._next_check]

    # -- transitions -------------------------------------------------------------------
    def offer(self, descriptors: Iterable[Descriptor]) -> None:
        """Let each slot keep the lowest ranked of what it holds and ``descriptors``.

        A peer offered again with the same addresses changes nothing (every slot has already
        weighed it, and a reseeded slot weighs the history), so volume costs little.
        """
        for d in descriptors:
            kept = self._history.get(d.peer)
            if d.peer == self._local or (kept is not None and kept.descriptor.addrs == d.addrs):
                continue
            self._version += 1
            groups = descriptor_groups(d)
            self._remember(d, groups)
            for slot in self._slots:
                rank = _rank(slot.seed, groups, d.peer)
                if slot.held is not None and slot.held.peer == d.peer:
                    slot.held, slot.rank = d, rank  # the same peer: its newest claims count
                elif slot.rank is None or rank < slot.rank:
                    slot.held, slot.rank = d, rank

    def remove(self, peer: PeerId) -> None:
        """Forget ``peer`` (it failed) and refill the slots it held from the history."""
        self._version += 1
        self._history.pop(peer, None)
        emptied = [s for s in self._slots if s.held is not None and s.held.peer == peer]
        for slot in emptied:
            slot.held = slot.rank = None
        self._refill(emptied)

    def reseed(self) -> None:
        """Give the next slot in rotation a fresh seed and refill it from the history."""
        self._version += 1
        slot = self._slots[self._next_reseed]
        self._next_reseed = (self._next_reseed + 1) % len(self._slots)
        slot.seed, slot.held, slot.rank = self._new_seed(), None, None
        self._refill([slot])

    # -- internals ---------------------------------------------------------------------
    def _remember(self, d: Descriptor, groups: list[tuple[str, str, str]]) -> None:
        rank = _rank(self._history_seed, groups, d.peer)
        self._history[d.peer] = _Kept(rank, d, frozenset(g[0] for g in groups))
        if len(self._history) > self._history_size:
            del self._history[self._eviction()]

    def _eviction(self) -> PeerId:
        """The highest ranked peer of the network with the most peers in the history: a flood
        of keys from one network only ever evicts its own."""
        counts: dict[str, int] = {}
        for kept in self._history.values():
            for network in kept.networks:
                counts[network] = counts.get(network, 0) + 1
        crowded = max(counts, key=lambda n: (counts[n], n))
        pool = [(kept.rank, p) for p, kept in self._history.items() if crowded in kept.networks]
        if counts[crowded] == 1:
            pool = [(kept.rank, p) for p, kept in self._history.items()]
        return max(pool)[1]

    def _refill(self, slots: list[_Slot]) -> None:
        if not slots:
            return
        for kept in self._history.values():
            d = kept.descriptor
            groups = descriptor_groups(d)
            for slot in slots:
                rank = _rank(slot.seed, groups, d.peer)
                if slot.rank is None or rank < slot.rank:
                    slot.held, slot.rank = d, rank


def _networks(d: Descriptor) -> frozenset[str]:
    return frozenset(g[0] for g in descriptor_groups(d))


@functools.lru_cache(maxsize=1 << 16)  # the same peers and networks are offered again and again
def _hash(seed: bytes, key: str) -> int:
    return int.from_bytes(blake2b(key.encode(), key=seed, digest_size=8).digest(), "big")


def _rank(seed: bytes, groups: list[tuple[str, str, str]], peer: PeerId) -> Rank:
    """The descriptor's rank under ``seed``: its worst address's (/16, /24, host), then its id."""
    identity = _hash(seed, "peer:" + peer)
    return max(
        (_hash(seed, "/16:" + g[0]), _hash(seed, "/24:" + g[1]), _hash(seed, "ip:" + g[2]), identity) for g in groups
    )
