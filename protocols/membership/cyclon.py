"""Cyclon peer sampling as a sans-IO state machine.

Voulgaris, Gavidia and van Steen, "CYCLON: Inexpensive Membership Management for
Unstructured P2P Overlays", J. Network and Systems Management 13(2), 2005.

Each node keeps a view of at most ``view_size`` descriptors. Every shuffle period it ages its
entries, picks the oldest peer Q, removes Q, and sends Q itself (age 0) plus
``shuffle_length - 1`` random entries; Q answers with ``shuffle_length`` random entries of
its own. Both sides integrate what they received (at most ``shuffle_length`` entries, however
many were sent), first filling empty slots, then replacing the entries they sent. A peer that never answers stays removed, which is how the view
forgets dead peers; being in a shuffle request puts a new peer into other views.

This class only transforms views: no network, no clock. Randomness comes from the ``rng``
it is given, so a seeded run is reproducible.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..peer_id import PeerId
from .messages import MAX_AGE, MAX_SHUFFLE_ENTRIES, Descriptor


@dataclass(frozen=True, slots=True)
class CyclonParams:
    """Cyclon parameters.

    Parameters
    ----------
    view_size : int (default: 20)
        Entries a node keeps (Cyclon's *c*).
    shuffle_length : int (default: 8)
        Entries exchanged per shuffle (Cyclon's *l*); at most ``view_size``.
    """

    view_size: int = 20
    shuffle_length: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.shuffle_length <= min(self.view_size, MAX_SHUFFLE_ENTRIES):
            raise ValueError(
                f"shuffle_length must be in [1, min(view_size, {MAX_SHUFFLE_ENTRIES})], "
                f"got {self.shuffle_length} with view_size {self.view_size}"
            )


class Cyclon:
    """One node's partial view and the Cyclon shuffle transitions on it."""

    def __init__(
        self,
        local: Descriptor,
        params: CyclonParams,
        rng: random.Random,
        *,
        mix: Callable[[], Sequence[Descriptor]] | None = None,
    ) -> None:
        self.local = local
        self.params = params
        self._rng = rng
        self._mix = mix
        """Where three quarters of every sample we send come from, if given. Membership passes its
        samplers' view: under attack the Cyclon view fills with Sybils, and sending only it
        would spread them; entries from the samplers keep honest peers circulating."""
        self._view: dict[PeerId, Descriptor] = {}
        self._pending: dict[PeerId, tuple[PeerId, ...]] = {}

    # -- observation -------------------------------------------------------------------
    def view(self) -> list[Descriptor]:
        """The current view, in insertion order."""
        return list(self._view.values())

    def __len__(self) -> int:
        return len(self._view)

    def __contains__(self, peer: object) -> bool:
        return peer in self._view

    # -- transitions -------------------------------------------------------------------
    def add(self, descriptors: Iterable[Descriptor]) -> None:
        """Fill free slots with ``descriptors`` (bootstrap peers, or a view from the store)."""
        for d in descriptors:
            if len(self._view) >= self.params.view_size:
                break
            if d.peer != self.local.peer and d.peer not in self._view:
                self._view[d.peer] = d

    def start_shuffle(self, target: Descriptor | None = None) -> tuple[Descriptor, tuple[Descriptor, ...]] | None:
        """Age the view, remove the oldest peer and return ``(target, request entries)``.

        A ``target`` given by the caller (a peer to check, from outside the view) is shuffled
        with instead, and leaves the view if it was there. Returns ``None`` when there is no
        one to shuffle with.
        """
        if target is None and not self._view:
            return None
        self._view = {p: _aged(d) for p, d in self._view.items()}
        if target is None:
            target = max(self._view.values(), key=lambda d: d.age)
        self._view.pop(target.peer, None)
        sample = self._outgoing(self.params.shuffle_length - 1, exclude=target.peer)
        self._pending[target.peer] = tuple(d.peer for d in sample)
        return target, (self.local, *sample)

    def on_request(self, sender: PeerId, entries: Iterable[Descriptor]) -> tuple[Descriptor, ...]:
        """Answer ``sender``'s shuffle: reply with a random sample, then integrate."""
        reply = tuple(self._outgoing(self.params.shuffle_length, exclude=sender))
        self._integrate(entries, sent=[d.peer for d in reply])
        return reply

    def on_reply(self, target: PeerId, entries: Iterable[Descriptor]) -> None:
        """Integrate ``target``'s answer to our shuffle."""
        self._integrate(entries, sent=list(self._pending.pop(target, ())))

    def on_failure(self, target: PeerId) -> None:
        """``target`` did not answer: it stays out of the view."""
        self._pending.pop(target, None)

    # -- internals ---------------------------------------------------------------------
    def _sample(self, k: int) -> list[Descriptor]:
        entries = list(self._view.values())
        return self._rng.sample(entries, min(k, len(entries)))

    def _outgoing(self, k: int, exclude: PeerId) -> list[Descriptor]:
        """``k`` entries to send (never ``exclude``): from the view, or 3/4 from ``mix``."""
        own = [d for d in self._sample(k + 1) if d.peer != exclude]
        if self._mix is None:
            return own[:k]
        chosen = {d.peer: d for d in own[: k // 4]}
        pool = [d for d in self._mix() if d.peer not in chosen and d.peer not in (exclude, self.local.peer)]
        for d in self._rng.sample(pool, min(k - len(chosen), len(pool))):
            chosen[d.peer] = d
        for d in own[k // 4 :]:  # the mix had too few: the view fills the rest
            if len(chosen) >= k:
                break
            chosen.setdefault(d.peer, d)
        return list(chosen.values())

    def _integrate(self, received: Iterable[Descriptor], sent: list[PeerId]) -> None:
        """Take at most ``shuffle_length`` of ``received``: more would let one peer's
        oversized shuffle fill the view (the wire allows ``MAX_SHUFFLE_ENTRIES``)."""
        replaceable = [p for p in sent if p in self._view]
        for d in itertools.islice(received, self.params.shuffle_length):
            if d.peer == self.local.peer:
                continue
            known = self._view.get(d.peer)
            if known is not None:
                if d.age < known.age:  # a fresher pointer to a peer we already know
                    self._view[d.peer] = Descriptor(d.peer, d.addrs or known.addrs, d.age)
                continue
            if len(self._view) < self.params.view_size:
                self._view[d.peer] = d
            elif replaceable:
                del self._view[replaceable.pop()]
                self._view[d.peer] = d


def _aged(d: Descriptor) -> Descriptor:
    return Descriptor(d.peer, d.addrs, min(d.age + 1, MAX_AGE))
