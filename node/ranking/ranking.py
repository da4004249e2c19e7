"""Ranking service: the catalog, search and clicks of one node, over its click log.

A search ranks the catalog's matches with G-Rank (Gold & Pouwelse 2023) over the click
log this node holds; a click signs a row into that log and starts a gossip round. What the
log keeps is decided by ``click_log.ClickLog`` (sans-IO); how it spreads, by
``gossip.ClickLogGossip`` (the trio driver of pulls, pushes and the anti-entropy timer).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from edgeswarm.learning.grank import GRank, GRankParams, normalise, rank, rank_baseline
from edgeswarm.learning.item_index import ItemIndex
from edgeswarm.node.config import RankingConfig
from edgeswarm.node.ranking.click_log import ClickLog
from edgeswarm.node.ranking.click_log_limits import ClickLogLimits
from edgeswarm.node.ranking.click_log_store import ClickLogStore
from edgeswarm.node.ranking.gossip import ClickLogGossip
from edgeswarm.node.store import Store
from edgeswarm.protocols.envelope import Signer
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.ranking.messages import ClickRow
from edgeswarm.protocols.ranking.rows import sign_row


@dataclass(frozen=True, slots=True)
class Result:
    item: str
    title: str
    tags: tuple[str, ...]


class Ranking:
    """G-Rank search for one node.

    Parameters
    ----------
    messenger : Messenger
    store : Store
    config : RankingConfig
    rng : random.Random
    signer : Signer
        Signs this node's click rows.
    peers : callable
        Candidate peers to pull from (the view and recently met peers).
    met : callable (default: ``peers``)
        Every peer met directly; their rows are evicted last.
    clock : callable (default: trio's clock)
        Time for the admission rates (the simulator's virtual time).
    """

    def __init__(
        self,
        messenger: Messenger,
        store: Store,
        config: RankingConfig,
        rng: random.Random,
        signer: Signer,
        peers: Callable[[], list[PeerId]],
        met: Callable[[], Iterable[PeerId]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._messenger = messenger
        self._config = config
        self._rng = rng
        self._signer = signer
        self.me = messenger.local_peer
        limits = ClickLogLimits(
            config.rows_per_peer_minute,
            config.rows_per_issuer_minute,
            config.max_rows,
            config.max_issuers,
            config.max_log_mb,
            config.rows_per_minute,
        )
        params = GRankParams(config.top_k_terms, config.isolation)
        self.log = ClickLog(self.me, ClickLogStore(store), params, limits, messenger.counters)
        self._last: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.gossip = ClickLogGossip(messenger, self.log, config, rng, peers, met or peers, clock or trio.current_time)

    @property
    def grank(self) -> GRank:
        return self.log.grank

    @property
    def index(self) -> ItemIndex:
        return self.log.index

    # -- the user's side -------------------------------------------------------------------
    def add_items(self, items: Iterable[tuple[str, str, Iterable[str]]], *, local: bool = True) -> int:
        """Add catalog items ``(item, title, tags)``; return how many."""
        return self.log.add_items(items, local=local)

    def search(self, query: str, *, explore: bool = True) -> list[Result]:
        """Ranked results for ``query``; remembered so that a following click can cite them."""
        terms = normalise(query)
        if not terms:
            raise ValueError("a query needs at least one word")
        p = self._config.p_explore if explore else 0.0
        ranked = rank(
            self.grank, self.index.matches(terms), terms, rng=self._rng, p_explore=p, limit=self._config.results
        )
        self._last = (terms, tuple(ranked))
        described = self.index.metas(ranked)
        return [Result(k, *described.get(k, ("", ()))) for k in ranked]

    def ranking_by(self, method: str, query: str, candidates: Iterable[str] | None = None) -> list[str]:
        """Item ids for ``query`` by ``method`` (grank, random, popularity or local), no exploration.

        What the simulator compares G-Rank with, on this node's own data. ``candidates``
        (default: the catalog's matches for the query) are the items to order, e.g. those a
        replayed log says were shown.
        """
        pool = self.index.matches(query) if candidates is None else set(candidates)
        if method == "grank":
            return rank(self.grank, pool, query, rng=self._rng, p_explore=0.0, limit=self._config.results)
        return rank_baseline(method, self.grank, pool, query, rng=self._rng, limit=self._config.results)

    def click_counts(self, query: str) -> Counter[str]:
        """Clicks per item for ``query`` in the rows this node holds (its view of the log)."""
        return self.grank.counts(query)

    async def click(self, item: str) -> ClickRow:
        """Record a click on ``item`` for the last search, then pull rows from one peer."""
        if self._last is None:
            raise ValueError("search before clicking")
        terms, shown = self._last
        meta = self.index.meta(item)
        if item not in shown and meta is None:
            raise ValueError(f"{item!r} is neither among the last results nor in the catalog")
        title, tags = meta or ("", ())
        row = ClickRow(
            node=self.me,
            number=self.log.next_number,
            terms=terms,
            seen_before=self.grank.clicked_for(terms),
            shown=shown,
            item=item,
            title=title[:256],
            tags=tuple(tags)[:16],
        )
        self.log.record(row, sign_row(self._signer, row))
        await self.gossip.after_click()
        return row
