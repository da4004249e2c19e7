"""Bounds on the click log a node keeps for others: rates per sender and per issuer, and a cap.

Click rows are signed, but a key costs nothing: one peer can sign millions of rows with
throwaway issuers (a Sybil flood), each of which would take a slot in G-Rank and the store.
So rows are admitted at a bounded rate per sending peer, per issuer and in all (many throwaway
senders add up), and when the log
holds more than ``max_log_mb`` megabytes, ``max_rows`` rows or ``max_issuers`` issuers, whole
issuers are evicted:
first those never met directly (hearsay identities cost nothing), fewest rows first (an
established issuer has more), oldest first. Our own rows and the rows of peers we met are
evicted last. Sans-IO: the ranking service passes time in and does the storing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgeswarm.protocols.limits import Rate, RateLimiter
from edgeswarm.protocols.peer_id import PeerId


@dataclass(frozen=True, slots=True)
class ClickLogLimits:
    """See ``RankingConfig`` for what each bound means."""

    rows_per_peer_minute: int = 3000
    rows_per_issuer_minute: int = 600
    max_rows: int = 200_000
    max_issuers: int = 5000
    max_log_mb: float = 64.0
    rows_per_minute: int = 12_000

    @property
    def max_bytes(self) -> int:
        return int(self.max_log_mb * 2**20)


class RowAdmission:
    """Which received rows we take now, and which issuers we have evicted (and keep out)."""

    MAX_EVICTED = 65_536  # evicted issuers remembered (their rows are dropped unread)

    def __init__(self, limits: ClickLogLimits) -> None:
        self.limits = limits
        self._per_peer = RateLimiter(Rate(limits.rows_per_peer_minute / 60, limits.rows_per_peer_minute))
        # everyone together, with a burst of 2.5 seconds' worth: many senders cannot add up to
        # more verifying and storing than the node can spare (the worst rows cost about 1 ms
        # each, and 2,000 at once held honest pings up for 1.6 s)
        self._all = RateLimiter(Rate(limits.rows_per_minute / 60, max(1, limits.rows_per_minute // 24)), max_keys=1)
        self._per_issuer = RateLimiter(
            Rate(limits.rows_per_issuer_minute / 60, limits.rows_per_issuer_minute), max_keys=4 * limits.max_issuers
        )
        self._evicted: OrderedDict[PeerId, None] = OrderedDict()

    def evicted(self, issuer: PeerId) -> bool:
        return issuer in self._evicted

    def spent(self, sender: PeerId, now: float, wanted: int = 1) -> str | None:
        """Why ``wanted`` rows from ``sender`` cannot be taken now ("peer_rate", "total_rate"), or None.

        Checked before a batch is decoded: once a budget is spent, its rows are refused
        unread (decoding them cost as much as storing a few).
        """
        if self._per_peer.available(sender, now) < wanted:
            return "peer_rate"
        if self._all.available("all", now) < wanted:
            return "total_rate"
        return None

    def admit(self, sender: PeerId, issuer: PeerId, now: float) -> str | None:
        """Take one row of ``issuer`` from ``sender``; None, or why not ("peer_rate", "issuer_rate",
        "total_rate")."""
        spent = self.spent(sender, now)
        if spent is not None:
            return spent
        if not self._per_issuer.take(issuer, now):
            return "issuer_rate"
        self._per_peer.take(sender, now)
        self._all.take("all", now)
        return None

    def over(self, rows: int, issuers: int, size: int = 0) -> bool:
        limits = self.limits
        return rows > limits.max_rows or issuers > limits.max_issuers or size > limits.max_bytes

    def choose_evictions(
        self,
        counts: Mapping[PeerId, int],
        met: set[PeerId],
        me: PeerId,
        sizes: Mapping[PeerId, int] | None = None,
    ) -> list[PeerId]:
        """Issuers to evict so that rows, issuers and bytes fall to 90% of their caps.

        ``counts`` holds rows per issuer in the order the issuers first arrived (oldest
        first); ``sizes`` their bytes (default: none counted). Never ourselves.
        """
        sizes = sizes or {}
        limits = self.limits
        rows_target, issuers_target = int(0.9 * limits.max_rows), int(0.9 * limits.max_issuers)
        bytes_target = int(0.9 * limits.max_bytes)
        rows, issuers, size = sum(counts.values()), len(counts), sum(sizes.values())
        arrival = {issuer: n for n, issuer in enumerate(counts)}
        order = sorted((i for i in counts if i != me), key=lambda i: (i in met, counts[i], arrival[i]))
        chosen = []
        for issuer in order:
            if rows <= rows_target and issuers <= issuers_target and size <= bytes_target:
                break
            chosen.append(issuer)
            rows -= counts[issuer]
            size -= sizes.get(issuer, 0)
            issuers -= 1
        self._remember(chosen)
        return chosen

    def _remember(self, issuers: Iterable[PeerId]) -> None:
        for issuer in issuers:
            self._evicted[issuer] = None
            self._evicted.move_to_end(issuer)
        while len(self._evicted) > self.MAX_EVICTED:
            self._evicted.popitem(last=False)
