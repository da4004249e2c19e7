"""Min-wise peer samplers that an attacker cannot bias by volume, as a sans-IO state machine.

Cyclon trusts what it is sent: fifty Sybil identities that shuffle hard fill a whole view.
Samplers, after Brahms (Bortnikov et al., PODC 2008) and BASALT (Auvolat et al., Middleware
2023), keep a sample that volume cannot buy:

- each slot has a secret random permutation and keeps, of every peer it has been offered,
  the one whose *rank* under it is lowest. Offering a peer a thousand times is the same as
  offering it once, so what fills a slot is a uniform draw from the *set* of peers seen, not
  from the stream. As in Brahms, the permutations are a cheap min-wise family: each key
  (network, address, id) is hashed once with the node's secret key (keyed BLAKE2b), and a
  slot ranks the hash ``x`` as ``(a * x + b) mod 2**64`` with its own secret ``a``, ``b``;
- the rank is hierarchical by network address (BASALT): a slot first picks the lowest ranked
  /16 network, then /24 in it, then address, then identity. One machine's fifty keys share
  one /16 and so have one chance between them, like one peer;
- a descriptor ranks by its *worst* address, so listing addresses one does not own can only
  hurt. Descriptors with no address (a virtual network, a peer known only by its id) all
  share one group and rank by identity alone;
- a relayed address (``.../p2p/RELAY/p2p-circuit``) ranks by its relay's address: nodes
  behind one relay share its group, as nodes behind one NAT share its public address;
- slots are given new permutations one at a time in rotation (BASALT's reset), so a dead or departed peer
  cannot hold a slot forever and a fresh draw happens continuously.

No network, no clock: the membership service offers what it hears, removes peers that fail,
and asks which peer to check next.
"""

from __future__ import annotations

import bisect
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


Hashes = tuple[tuple[int, int, int, int], ...]
"""A descriptor's keyed hashes: (/16, /24, host, id) for each address it claims."""

MASK = (1 << 64) - 1


@dataclass(slots=True)
class _Slot:
    a: int
    b: int
    held: Descriptor | None = None
    rank: Rank | None = None
    hashes: Hashes = ()  # the held peer's

    def hold(self, d: Descriptor, hashes: Hashes, rank: Rank | None = None) -> None:
        self.held, self.hashes, self.rank = d, hashes, self.rank_of(hashes) if rank is None else rank

    def beaten_by(self, hashes: Hashes) -> bool:
        """Whether ``hashes`` rank below what the slot holds (computing no more than needed:
        this runs for every slot and every new peer)."""
        held = self.rank
        assert held is not None
        if len(hashes) > 1 or len(self.hashes) > 1:
            return self.rank_of(hashes) < held
        (n, p, h, i), (hn, hp, hh, _) = hashes[0], self.hashes[0]
        if n == hn and p == hp and h == hh:  # the same address: only the identities differ
            return (self.a * i + self.b) & MASK < held[3]
        first = (self.a * n + self.b) & MASK  # the /16: decides unless it is shared
        if first != held[0]:
            return first < held[0]
        return self.rank_of(hashes) < held

    def rank_of(self, hashes: Hashes) -> Rank:
        """The worst rank of the descriptor's addresses under this slot's permutation."""
        a, b = self.a, self.b
        ranks = [
            ((a * n + b) & MASK, (a * p + b) & MASK, (a * h + b) & MASK, (a * i + b) & MASK) for n, p, h, i in hashes
        ]
        return ranks[0] if len(ranks) == 1 else max(ranks)


@dataclass(frozen=True, slots=True)
class _Kept:
    descriptor: Descriptor
    hashes: Hashes
    networks: tuple[str, ...]


class Samplers:
    """``slots`` min-wise samplers over every peer offered, and a history to refill them.

    The history is a min-wise sample too: when full, it drops the highest ranked peer (under
    one more secret seed) of the network with the most peers in it. A flood of new keys
    from one network therefore evicts only that network's peers, and a flood from many
    networks evicts by rank, not by arrival. It is what a reseeded or emptied slot is
    refilled from (``REFILL_FROM`` peers of it drawn at random: a uniform draw from the
    history is as fair as the whole, and keeps a reseed cheap), and what tops up a sample.

    Parameters
    ----------
    local : PeerId
        Never sampled.
    slots : int
        How many samplers.
    rng : random.Random
        Draws the secret seeds (seeded in the simulator, so runs reproduce).
    history : int (default: 256)
        Peers kept to refill slots from.
    """

    REFILL_FROM = 32
    WEIGHED_LIMIT = 4096
    """Peers remembered as weighed by every slot, so that offering them again costs nothing
    (the history keeps fewer; a peer it evicted must not be weighed at every mention)."""

    def __init__(self, local: PeerId, slots: int, rng: random.Random, *, history: int = 256) -> None:
        if slots < 1 or history < 1:
            raise ValueError(f"slots and history must be at least 1, got {slots} and {history}")
        self._local = local
        self._rng = rng
        self._key = rng.getrandbits(128).to_bytes(16, "big")
        self._slots = [self._new_slot() for _ in range(slots)]
        self._history_order = self._new_slot()
        self._history_size = history
        self._history: dict[PeerId, _Kept] = {}
        self._order: list[tuple[Rank, PeerId]] = []  # the history by rank, kept sorted
        self._networks: dict[str, int] = {}  # /16 network -> peers of it in the history
        self._weighed: dict[PeerId, tuple[str, ...]] = {}  # peer -> the addresses it was weighed with
        self._next_reseed = 0
        self._next_check = 0
        self._version = 0  # bumped on every change, so samples are computed once per state
        self._cached: tuple[int, int, list[Descriptor]] | None = None

    def _new_slot(self) -> _Slot:
        return _Slot(self._rng.getrandbits(64) | 1, self._rng.getrandbits(64))  # odd a: a bijection

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
        return [self._history[peer].descriptor for _, peer in self._order]

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
        for peer in chosen:
            for network in self._history[peer].networks if peer in self._history else ():
                used[network] = used.get(network, 0) + 1
        fair = -(-size // max(len(self._networks), 1))
        for limit in (1, fair):
            for _, peer in self._order:
                if len(chosen) >= size or (limit == 1 and len(used) >= len(self._networks)):
                    break  # full, or every network has its one
                kept = self._history[peer]
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
        weighed it), so volume costs little.
        """
        for d in descriptors:
            if d.peer == self._local or self._weighed.get(d.peer) == d.addrs:
                continue
            if len(self._weighed) >= self.WEIGHED_LIMIT:
                self._weighed.clear()  # a bound, not a cache policy: some peers get weighed twice
            self._weighed[d.peer] = d.addrs
            self._version += 1
            groups = descriptor_groups(d)
            hashes = self._hashes(d, groups)
            self._remember(d, hashes, groups)
            for slot in self._slots:
                # an empty slot, the same peer (its newest claims count), or a lower rank
                if slot.held is None or slot.held.peer == d.peer or slot.beaten_by(hashes):
                    slot.hold(d, hashes)

    def remove(self, peer: PeerId) -> None:
        """Forget ``peer`` (it failed) and refill the slots it held from the history."""
        self._version += 1
        self._forget(peer)
        self._weighed.pop(peer, None)  # if it comes back, it is weighed afresh
        emptied = [s for s in self._slots if s.held is not None and s.held.peer == peer]
        for slot in emptied:
            slot.held, slot.rank, slot.hashes = None, None, ()
        self._refill(emptied)

    def reseed(self) -> None:
        """Give the next slot in rotation a fresh permutation and refill it from the history."""
        self._version += 1
        index = self._next_reseed
        self._next_reseed = (index + 1) % len(self._slots)
        self._slots[index] = slot = self._new_slot()
        self._refill([slot])

    # -- internals ---------------------------------------------------------------------
    def _hashes(self, d: Descriptor, groups: list[tuple[str, str, str]]) -> Hashes:
        key, identity = self._key, _hash(self._key, "peer:" + d.peer)
        return tuple(
            (_hash(key, "/16:" + g[0]), _hash(key, "/24:" + g[1]), _hash(key, "ip:" + g[2]), identity) for g in groups
        )

    def _remember(self, d: Descriptor, hashes: Hashes, groups: list[tuple[str, str, str]]) -> None:
        self._forget(d.peer)
        networks = tuple(dict.fromkeys(g[0] for g in groups))
        kept = _Kept(d, hashes, networks)
        self._history[d.peer] = kept
        bisect.insort(self._order, (self._history_order.rank_of(hashes), d.peer))
        for network in kept.networks:
            self._networks[network] = self._networks.get(network, 0) + 1
        if len(self._history) > self._history_size:
            self._forget(self._eviction())

    def _forget(self, peer: PeerId) -> None:
        kept = self._history.pop(peer, None)
        if kept is None:
            return
        del self._order[bisect.bisect_left(self._order, (self._history_order.rank_of(kept.hashes), peer))]
        for network in kept.networks:
            self._networks[network] -= 1
            if not self._networks[network]:
                del self._networks[network]

    def _eviction(self) -> PeerId:
        """The highest ranked peer of the network with the most peers in the history: a flood
        of keys from one network only ever evicts its own."""
        crowded = max(self._networks, key=lambda n: (self._networks[n], n))
        for _, peer in reversed(self._order):
            if self._networks[crowded] == 1 or crowded in self._history[peer].networks:
                return peer
        raise AssertionError("the history is not empty")

    def _refill(self, slots: list[_Slot]) -> None:
        if not slots:
            return
        peers = list(self._history)
        if len(peers) > self.REFILL_FROM:
            peers = self._rng.sample(peers, self.REFILL_FROM)
        for peer in peers:
            kept = self._history[peer]
            for slot in slots:
                rank = slot.rank_of(kept.hashes)
                if slot.rank is None or rank < slot.rank:
                    slot.hold(kept.descriptor, kept.hashes, rank)


@functools.lru_cache(maxsize=1 << 14)  # networks recur across peers
def _hash(key: bytes, text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), key=key, digest_size=8).digest(), "big")
